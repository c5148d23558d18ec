"""The layout's dependency direction (search/__init__.py), read from every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"search.run", "search.clean", "search.export", "search.predict", "search.report"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports (``from a.b import c`` counts as a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _package(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): _imports(p) for p in sorted((ROOT / folder).rglob("*.py"))}


def _offending(folder: str, forbidden) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, names in _package(folder).items()
        for name in sorted(names)
        if forbidden(name)
    ]


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_trainer_and_storage_import_nothing_of_search_or_spaces() -> None:
    assert _offending("trainer", lambda n: _under(n, "search", "storage", "spaces")) == []
    assert _offending("storage", lambda n: _under(n, "search", "spaces")) == []


def test_policy_reporting_data_and_cleaning_never_reach_the_engine_or_commands() -> None:
    for folder in ("search/policy", "search/reporting", "search/data", "search/cleaning"):
        assert _offending(folder, lambda n: _under(n, "search.engine", *COMMANDS)) == [], folder
    assert _offending("search/engine", lambda n: _under(n, *COMMANDS)) == []


def test_policy_never_writes_a_study() -> None:
    writes = ("set_user_attr", "enqueue_trial", "set_trial_user_attr", ".tell(")
    for path in sorted((ROOT / "search/policy").glob("*.py")):
        text = path.read_text()
        assert not [w for w in writes if w in text], path


def test_no_private_name_is_imported_across_our_modules() -> None:
    ours = ("search", "storage", "trainer", "spaces")
    offending = []
    for folder in ours:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and _under(node.module, *ours):
                    offending += [
                        f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                        for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"
                    ]
    assert offending == []
