"""What a user sees on the terminal: one-line usage errors, and -q / default / -v output without
the frameworks' start-up chatter (the real commands, in subprocesses)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.cli import Parser
from tests.search.cli import ROOT, cli_env

# Each command with the flags it requires (argparse names missing ones before unknown ones).
COMMANDS = {
    "search.run": (),
    "search.predict": ("--model", "m"),
    "search.export": ("--study", "s", "--out", "o"),
    "search.report": ("--study", "s", "--out", "o"),
    "search.clean": ("--data", "demo", "--out", "o.npz"),
}
# TensorFlow / absl / oneDNN / CUDA start-up lines, and Python warnings out of the frameworks.
NOISE = re.compile(
    r"^[IWEF]\d{4} |oneDNN|absl|cuda|TF_ENABLE|tensorflow/|cpu_feature_guard|"
    r"This TensorFlow binary|(Warning|warn)\(|site-packages",
    re.M,
)
# The quiet switches a user's shell does not have: each test starts without them.
QUIET_VARIABLES = (
    "TF_CPP_MIN_LOG_LEVEL",
    "GLOG_minloglevel",
    "GRPC_VERBOSITY",
    "TF_ENABLE_ONEDNN_OPTS",
    "PYTHONWARNINGS",
)


def user_env(**extra: str) -> dict[str, str]:
    env = cli_env()
    for name in QUIET_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env


def command(module: str, *args: str, cwd: Path = ROOT, timeout: float = 300, **env: str):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=user_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- usage errors: one line naming the flag and the value, a pointer to --help, exit code 2


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        (
            "search.run",
            ("--study", "quick", "--budget", "3x"),
            "error: --budget '3x' is not a duration; write seconds (1800) or a number with s, m "
            "or h (90s, 30m, 1.5h)",
        ),
        (
            "search.run",
            ("--study", "quick", "--budget", "1h", "--final-augment", "wild"),
            "error: --final-augment 'wild' is not one of ",
        ),
        ("search.run", ("--study", "quick", "--folds", "two"), "error: --folds 'two' is not a"),
        ("search.run", ("--study", "quick", "--budget"), "error: --budget needs a value"),
        (
            "search.run",
            ("--study", "quick", "--n-trails", "3"),
            "error: --n-trails is not a flag of python -m search.run; did you mean --n-trials?",
        ),
        (
            "search.predict",
            ("--model", "m", "--batch-size", "lots"),
            "error: --batch-size 'lots' is not a whole number",
        ),
        (
            "search.predict",
            ("--model", "m", "--tta=yes"),
            "error: --tta takes no value (got 'yes')",
        ),
        (
            "search.predict",
            ("--model", "m", "--colour", "grey"),
            "error: --colour is not a flag of python -m search.predict",
        ),
        ("search.predict", (), "error: the following arguments are required: --model"),
    ],
)
def test_a_usage_error_is_one_line_and_a_pointer_to_help(
    module: str, args: tuple[str, ...], expected: str, capsys
) -> None:
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(list(args))
    assert stopped.value.code == 2
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert lines[0].startswith(expected), out.err
    assert lines[1:] == [f"run 'python -m {module} --help' for every flag"], out.err
    assert "usage:" not in out.err and out.out == ""


@pytest.mark.parametrize(
    ("message", "line"),
    [
        # argparse's wording before and after Python 3.12.8 stopped quoting the choices
        (
            "argument --level: invalid choice: 'w' (choose from 'a', 'b')",
            "--level 'w' is not one of a, b",
        ),
        (
            "argument --level: invalid choice: 'w' (choose from a, b)",
            "--level 'w' is not one of a, b",
        ),
        ("argument -s/--seed: invalid int value: '1.5'", "--seed '1.5' is not a whole number"),
        ("argument --timeout: invalid float value: 'soon'", "--timeout 'soon' is not a number"),
        ("argument --out: expected one argument", "--out needs a value"),
        ("argument --a: not allowed with argument --b", "--a: not allowed with argument --b"),
        (
            "unrecognized arguments: extra",
            "unexpected value 'extra': every value follows the flag it is for",
        ),
        (
            "the following arguments are required: --out",
            "the following arguments are required: --out",
        ),
    ],
)
def test_argparse_messages_are_reworded_to_name_the_flag_first(message: str, line: str) -> None:
    parser = Parser(prog="python -m search.x")
    parser.add_argument("--level")
    assert parser.one_line(message) == line


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_answers_an_unknown_flag_in_two_lines(module: str) -> None:
    out = command(module, *COMMANDS[module], "--no-such-flag", "value", timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"error: --no-such-flag is not a flag of python -m {module}",
        f"run 'python -m {module} --help' for every flag",
    ]


# ---- the frameworks' start-up chatter


def test_native_stderr_filter_drops_framework_lines_and_keeps_the_rest() -> None:
    code = (
        "import os\n"
        "from search.cli import native_stderr_filtered\n"
        "with native_stderr_filtered():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796592170.265707    5237 port.cc:153] oneDNN custom "
        "operations are on.\\n')\n"
        "    os.write(2, b'kept line\\nE0000 00:00:1.5   12 cuda_dnn.cc:8] Unable to register "
        "cuDNN factory: x\\n')\n"
        "    os.write(2, b'E0000 00:00:1.5   12 loader.cc:8] a real error\\nno newline')\n"
        "os.write(2, b'|after\\n')\n"
    )
    out = python(code)
    assert out.returncode == 0, out.stderr
    assert (
        out.stderr
        == "kept line\nE0000 00:00:1.5   12 loader.cc:8] a real error\nno newline|after\n"
    )


def test_quiet_sets_the_switches_but_keeps_the_users_and_verbose_shows_all() -> None:
    code = (
        "import os, sys\n"
        "from search.cli import quiet_frameworks\n"
        "before = len(sys.meta_path)\n"
        "quiet_frameworks(verbose={verbose})\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('GRPC_VERBOSITY'), "
        "len(sys.meta_path) - before)\n"
    )
    # Quiet: the switches, and an import filter for TensorFlow's loading lines.
    assert python(code.format(verbose=False)).stdout.split() == ["2", "ERROR", "1"]
    assert python(code.format(verbose=False), TF_CPP_MIN_LOG_LEVEL="1").stdout.split() == [
        *("1", "ERROR", "1")
    ]
    # Verbose: everything, unless the user asked for less; no filter.
    assert python(code.format(verbose=True)).stdout.split() == ["0", "None", "0"]
    assert python(code.format(verbose=True), TF_CPP_MIN_LOG_LEVEL="3").stdout.split() == [
        *("3", "None", "0")
    ]


SEARCH = (
    *("--study", "quick", "--data", "demo", "--folds", "2", "--epochs", "1"),
    *("--image-size", "32", "--pruner", "none"),
)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    """A one-trial study on demo data, run at the default verbosity (real Keras training)."""
    root = tmp_path_factory.mktemp("usage")
    url = f"sqlite:///{root / 'studies.db'}"
    out = command("search.run", *SEARCH, "--n-trials", "1", "--storage", url, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return root, url, out


def test_default_shows_progress_without_framework_lines(searched) -> None:
    _, _, out = searched
    assert "trial 0 fold 0 done" in out.stderr and "trial 0 complete" in out.stderr
    assert NOISE.search(out.stderr) is None, out.stderr


def test_quiet_search_prints_the_summary_only(searched) -> None:
    root, url, _ = searched
    out = command("search.run", *SEARCH, "--n-trials", "2", "--storage", url, "-q", cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.strip() == "", out.stderr
    assert "2/2 finished" in out.stdout


def test_quiet_export_and_predict_print_no_framework_lines(searched) -> None:
    root, url, _ = searched
    model = root / "model"
    exported = command(
        "search.export",
        *("--study", "quick", "--storage", url, "--out", str(model), "--epochs", "1", "-q"),
        cwd=root,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert NOISE.search(exported.stderr) is None, exported.stderr
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    np.savez(root / "new.npz", images=images)
    predicted = command(
        "search.predict",
        *("--model", str(model), "--data", str(root / "new.npz"), "--out", "p.csv", "-q"),
        cwd=root,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    # Random pixels look like no training image: the one line -q keeps is that warning.
    lines = predicted.stderr.strip().splitlines()
    assert len(lines) == 1 and "look unlike the images the model trained on" in lines[0], lines
    assert NOISE.search(predicted.stderr) is None, predicted.stderr
    assert (root / "p.csv").read_text().count("\n") == 9


def test_the_readmes_first_command_runs_as_written() -> None:
    """The first search.run command of the README's 'Set up and run' block parses, and its
    --data is built in (no file the reader does not have); the next one names their own folder."""
    import shlex

    from search.data.inputs import KEYWORDS
    from search.run import build_parser

    text = (ROOT / "README.md").read_text()
    block = text.split("## Set up and run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [
        shlex.split(line.split("#", 1)[0])[2:]
        for line in block.splitlines()
        if line.strip().startswith("python -m search.run")
    ]
    assert len(commands) >= 2
    first = build_parser().parse_args(commands[0][1:])
    assert first.data in KEYWORDS
    assert build_parser().parse_args(commands[1][1:]).data.endswith("/")  # a folder of classes
