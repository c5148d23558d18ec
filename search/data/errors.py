"""The one error type of the data layer: unusable input data, explained in one message."""

from __future__ import annotations


class DataError(ValueError):
    """The data cannot be used as given.

    The message reads ``"<where>: <problem>. <fix>"``: where is the file, folder, array key or
    source the problem was found in, problem says what is wrong (with the values found), fix
    says what to do. ``where``, ``problem`` and ``fix`` stay available as attributes so a CLI can
    render them differently. Retrying cannot help: the coordinator should stop the search.
    """

    def __init__(self, problem: str, where: str = "", fix: str = "") -> None:
        self.problem = problem
        self.where = where
        self.fix = fix
        super().__init__(_compose(problem, where, fix))

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str, str]]:
        # Keep the parts when the error crosses a process boundary (pickle).
        return (type(self), (self.problem, self.where, self.fix))


def _compose(problem: str, where: str, fix: str) -> str:
    text = problem.rstrip(". ")
    if where:
        text = f"{where}: {text}"
    if fix:
        fix = fix.rstrip(". ")
        text = f"{text}. {fix[:1].upper()}{fix[1:]}."
    return text
