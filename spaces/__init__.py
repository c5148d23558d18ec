"""Search spaces, one module each; ``SPACES`` is the explicit table the CLI chooses from."""

from __future__ import annotations

from spaces import all as all_space
from spaces import convnext, efficientnet, mobilenet, quick
from spaces.base import FakeSuggester, Space, StudySettings, Suggester

SPACES: dict[str, Space] = {
    s.name: s
    for s in (quick.SPACE, mobilenet.SPACE, efficientnet.SPACE, convnext.SPACE, all_space.SPACE)
}

__all__ = ["SPACES", "FakeSuggester", "Space", "StudySettings", "Suggester"]
