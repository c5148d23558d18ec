"""``search.run --weights DIR``: start a new study from an earlier export's backbone (a lab
adapting its model to its own microscope with a few dozen labelled images).

The export's ``config.json`` names the backbone; the study searches that backbone only, with
unfreeze depth and everything else searched as for ImageNet weights. The backbone's weights are
read out of ``model.keras`` once into ``<artifacts>/start_weights/<digest>.weights.h5``, a file
every trial and the final model load as they would any ``--weights PATH`` file. The head is new:
the new study's classes need not be the old one's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from search.cli import UsageError
from spaces.base import Space
from trainer.config import BACKBONES

log = logging.getLogger(__name__)


def is_export(weights: str) -> bool:
    return Path(weights).expanduser().is_dir()


@dataclass(frozen=True)
class StartModel:
    folder: Path
    backbone: str
    digest: str  # of model.keras: the extracted file is named by it

    @classmethod
    def read(cls, weights: str) -> StartModel:
        """The export folder ``weights`` names; UsageError says what is wrong with it."""
        folder = Path(weights).expanduser().resolve()
        missing = [n for n in ("model.keras", "config.json") if not (folder / n).is_file()]
        if missing:
            raise UsageError(
                f"--weights {weights} is a folder but not an export (missing "
                f"{', '.join(missing)}); pass a folder written by search.export or a --budget "
                "run, a weights file, imagenet or none"
            )
        try:
            config = json.loads((folder / "config.json").read_text())
            backbone = str(config["config"]["backbone"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--weights {weights}: cannot read its config.json ({exc})") from exc
        if backbone not in BACKBONES:
            raise UsageError(
                f"--weights {weights}: its backbone {backbone!r} is not one this version knows "
                f"({', '.join(BACKBONES)})"
            )
        digest = hashlib.sha256((folder / "model.keras").read_bytes()).hexdigest()[:16]
        return cls(folder, backbone, digest)

    def narrow(self, space: Space) -> Space:
        """``space`` with this backbone only (and the starting points for it)."""
        log.info(
            "--weights %s: the search keeps its backbone, %s, and searches unfreeze depth and "
            "the rest as for ImageNet weights (the head is new)",
            self.folder,
            self.backbone,
        )
        return dataclasses.replace(
            space,
            backbones=(self.backbone,),
            starting_points=tuple(
                p for p in space.starting_points if p["backbone"] == self.backbone
            ),
        )

    def extract(self, into: Path) -> str:
        """Write the backbone's weights under ``into`` (kept when already there); the path."""
        import keras

        from trainer.readout import classifiers

        target = into / f"{self.backbone}-{self.digest}.weights.h5"
        if target.is_file():
            return str(target)
        into.mkdir(parents=True, exist_ok=True)
        model = keras.models.load_model(self.folder / "model.keras")
        member = classifiers(model)[0]
        backbone = next(layer for layer in member.layers if isinstance(layer, keras.Model))
        tmp = into / f".{target.name}.tmp.weights.h5"  # Keras wants the suffix
        backbone.save_weights(str(tmp))
        os.replace(tmp, target)  # same folder: atomic
        log.info(
            "starting from %s: its %s backbone's weights are in %s",
            self.folder,
            self.backbone,
            target,
        )
        return str(target)
