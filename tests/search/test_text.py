"""counted(): a count with its noun in the right number, for every user-facing message."""

from __future__ import annotations

from search.text import counted


def test_counted_is_singular_only_for_one() -> None:
    assert counted(1, "image") == "1 image"
    assert [counted(n, "image") for n in (0, 2, 20)] == ["0 images", "2 images", "20 images"]
    assert (counted(1, "class"), counted(3, "class")) == ("1 class", "3 classes")
    assert counted(5, "fold-epoch") == "5 fold-epochs"
    assert counted(2, "child", "children") == "2 children"
