"""Words for user-facing messages: a count with its noun in the right number."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 image"``, ``"3 images"``, ``"2 classes"``; pass ``plural`` for other forms
    (``"batch"``: ``"batches"``; a noun ending in "ch" otherwise just gains an "s", as "epoch")."""
    n = int(n)
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("s", "x", "sh")) else "s")
    return f"{n} {plural}"
