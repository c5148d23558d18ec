"""What every ``python -m search.*`` command shares: exit codes, the parser and its one-line
usage errors, logging, and keeping the frameworks' start-up chatter off the terminal."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, NoReturn

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def usage_error(message: str) -> int:
    """Print one ``error:`` line and return the usage exit code (2)."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


# argparse's own messages, reworded so each names the flag and the value first.
_ARGUMENT = re.compile(r"argument (?P<flag>[^:]+): (?P<detail>.*)", re.S)
_CHOICE = re.compile(r"invalid choice: (?P<value>.*) \(choose from (?P<choices>.*)\)", re.S)
_TYPED = re.compile(r"invalid (?P<kind>\w+) value: (?P<value>.*)", re.S)
_VALUELESS = re.compile(r"ignored explicit argument (?P<value>.*)", re.S)
_KINDS = {"int": "a whole number", "float": "a number"}
_DETAILS = {
    "expected one argument": "needs a value",
    "expected at least one argument": "needs at least one value",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and a pointer to ``--help``.

    argparse prints its whole usage text above the error, which buries the one line that says
    what was wrong; here it is ``error: --budget '3x' is not a duration; ...`` and exit code 2.
    """

    def error(self, message: str) -> NoReturn:
        pointer = f"run '{self.prog} --help' for every flag"
        self.exit(EXIT_USAGE, f"error: {self.one_line(message)}\n{pointer}\n")

    def one_line(self, message: str) -> str:
        """argparse's message as one line that names the flag and the value."""
        message = " ".join(message.split())
        if message.startswith("unrecognized arguments: "):
            return self._unrecognized(message.split(": ", 1)[1].split())
        found = _ARGUMENT.fullmatch(message)
        if found is None:
            return message
        flag, detail = found["flag"].split("/")[-1], found["detail"]
        if choice := _CHOICE.fullmatch(detail):
            valid = ", ".join(c.strip().strip("'\"") for c in choice["choices"].split(","))
            detail = f"{choice['value']} is not one of {valid}"
        elif typed := _TYPED.fullmatch(detail):
            kind = _KINDS.get(typed["kind"], f"a valid {typed['kind']}")
            detail = f"{typed['value']} is not {kind}"
        elif valueless := _VALUELESS.fullmatch(detail):
            return f"{flag} takes no value (got {valueless['value']})"
        elif detail in _DETAILS:
            return f"{flag} {_DETAILS[detail]}"
        return f"{flag} {detail}" if detail.startswith(("'", '"')) else f"{flag}: {detail}"

    def _unrecognized(self, words: Sequence[str]) -> str:
        flags = [w for w in words if w.startswith("-")]
        if not flags:
            return f"unexpected value {words[0]!r}: every value follows the flag it is for"
        unknown = flags[0].split("=", 1)[0]
        close = difflib.get_close_matches(unknown, list(self._option_string_actions), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{unknown} is not a flag of {self.prog}{hint}"


# Framework chatter, each switch set before the framework is imported: TensorFlow's C++ logs
# below errors, glog/absl's and gRPC's. A value the user set is kept.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "GRPC_VERBOSITY": "ERROR"}
FRAMEWORK_LOGGERS = ("absl", "tensorflow", "jax", "torch")
# Python warnings raised from these packages (warnings.filterwarnings matches the name's start).
FRAMEWORK_MODULES = r"(absl|tensorflow|tf_keras|keras|jax|jaxlib|torch|h5py|google\.protobuf)(\.|$)"
# What TensorFlow's libraries print on stderr while they load, before absl::InitializeLog():
# TF_CPP_MIN_LOG_LEVEL does not reach these (the oneDNN notice, say; only TF_ENABLE_ONEDNN_OPTS=0
# silences that one, and it also turns oneDNN off). Errors and fatal lines pass, but for the
# ones every CUDA build prints whether anything is wrong or not.
NATIVE_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|E\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*(Unable to register cu\w+ factory"
    r"|computation placer already registered|failed call to cuInit).*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate .*"
)
NOISY_IMPORTS = ("tensorflow",)


def setup_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Plain messages on stderr: INFO by default, DEBUG with -v, WARNING with -q; the
    frameworks' own chatter is kept out unless -v (``quiet_frameworks``)."""
    quiet_frameworks(verbose=verbose)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def quiet_frameworks(*, verbose: bool = False) -> None:
    """Keep TensorFlow, absl, JAX and PyTorch start-up chatter off stderr, in this process and
    (through the environment) in the workers it starts; with ``verbose`` show all of it.

    Call it before anything imports a framework: the environment is read once, at import.
    """
    if verbose:
        # Everything, unless the user asked for less; a later setdefault cannot raise it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=FRAMEWORK_MODULES)
    if not any(isinstance(f, _QuietImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImports())


class _QuietImports(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it hands back the real spec of a ``NOISY_IMPORTS`` module with a
    loader that runs the import under ``native_stderr_filtered``."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in NOISY_IMPORTS or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with native_stderr_filtered():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


@contextlib.contextmanager
def native_stderr_filtered(noise: re.Pattern[str] = NATIVE_NOISE) -> Iterator[None]:
    """Pass file descriptor 2 (what C++ libraries write to, too) through a thread that drops
    whole lines matching ``noise`` and forwards every other line as it comes."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield  # no stderr to filter
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forward = threading.Thread(
        target=_forward_lines, args=(read_end, saved, noise), name="stderr-filter", daemon=True
    )
    forward.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer is gone: the thread reads to its end
        forward.join(timeout=5)
        if not forward.is_alive():
            os.close(saved)


def _forward_lines(read_end: int, out: int, noise: re.Pattern[str]) -> None:
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line for line in lines if not noise.fullmatch(line.decode(errors="replace"))]
            _write_all(out, b"".join(line + b"\n" for line in kept))
        if not noise.fullmatch(pending.decode(errors="replace")):
            _write_all(out, pending)
    finally:
        os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
