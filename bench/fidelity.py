"""Does the search's low-fidelity ranking carry over to the final model's fidelity?

Draws ``--configs`` configurations from the quick space (seeded ``Space.sample``), scores each
twice on real blood cells, and prints the rank correlation (Spearman) between the two scores:

- search fidelity: the quick space's 3-fold cross-validation at 64 px, 4 epochs per fold, on the
  training images (what ``python -m search.run --study quick`` ranks by);
- final fidelity: what ``--budget`` trains for the final model: all training images at their own
  96 px, the epochs ``search.policy.budget.epochs_to_converge`` takes from the trial's curves, a cosine
  schedule; scored on test images no configuration saw.

The images are the ``--dev`` split of ``bench/end_to_end.py`` (half to train, a sixth to test),
never its held-out quarter. Writes docs/fidelity.md.

    python bench/fidelity.py [--configs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import ROOT, machine  # noqa: I001
from end_to_end import load_split
from scipy.stats import spearmanr

from search.policy.budget import epochs_to_converge
from spaces import SPACES, StudySettings
from trainer import Decision
from trainer.config import TrialConfig
from trainer.final import cosine_schedule, fit_all
from trainer.folds import make_folds
from trainer.train import train_trial


class _Draws:
    """A seeded stand-in for an Optuna trial: uniform choices, log-uniform floats where asked."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def suggest_categorical(self, name, choices):
        return choices[int(self.rng.integers(len(choices)))]

    def suggest_int(self, name, low, high, *, step=1, log=False):
        return int(self.rng.integers(low, high + 1))

    def suggest_float(self, name, low, high, *, step=None, log=False):
        if log:
            return float(np.exp(self.rng.uniform(np.log(low), np.log(high))))
        return float(self.rng.uniform(low, high))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    space = SPACES["quick"]
    train, test, split = load_split(dev=True, seed=0)
    from search.data.images import resize_all  # the search's Lanczos resize

    small = type(train)(resize_all(train.images, space.image_size), train.labels, train.class_names)
    folds = make_folds(train.labels, space.folds, args.seed)
    settings = StudySettings(epochs=space.epochs, weights="none", seed=args.seed, image_size=64)
    rows = []
    started = time.monotonic()
    for k in range(args.configs):
        config = space.sample(_Draws(args.seed * 1000 + k), settings)
        result = train_trial(config, small, folds, lambda *a: Decision.CONTINUE, monitor="accuracy")
        cv = result.mean_score("accuracy")
        epochs, _ = epochs_to_converge(result.folds, "accuracy", space.epochs)
        final = TrialConfig.from_dict({**config.to_dict(), "image_size": 96, "epochs": epochs})
        model = fit_all(final, train, epochs, lr_schedule=cosine_schedule(final, epochs)).model
        predicted = np.argmax(model.predict(test.images.astype(np.float32), verbose=0), axis=1)
        held = float(np.mean(predicted == test.labels))
        rows.append((k, config, cv, epochs, held))
        print(f"config {k}: {config.backbone} {config.augment} {config.optimizer} "
              f"lr {config.learning_rate:.2g}: cv {cv:.4f}, final {epochs} epochs -> {held:.4f}",
              flush=True)  # fmt: skip
    rho, pval = spearmanr([r[2] for r in rows], [r[4] for r in rows])
    lines = [
        "# Fidelity: the search's ranking against the final model's",
        "",
        f"`python bench/fidelity.py --configs {args.configs} --seed {args.seed}` "
        f"({(time.monotonic() - started) / 60:.0f} min). {args.configs} configurations drawn "
        "from the quick space, each scored at the search's fidelity (3-fold CV, 64 px, 4 epochs "
        "per fold, on the training images) and at the final model's (all training images at "
        "96 px for the epochs its curves ask for, cosine schedule, scored on test images). "
        f"Images: {len(train)} to train, {len(test)} to test ({split}).",
        "",
        f"**Spearman rank correlation: {rho:.2f}** (p = {pval:.3f}).",
        "",
        "| config | backbone | augment | optimizer | lr | search CV accuracy | final epochs | final test accuracy |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for k, c, cv, epochs, held in rows:
        lines.append(
            f"| {k} | {c.backbone} | {c.augment} | {c.optimizer} | {c.learning_rate:.2g} | "
            f"{cv:.4f} | {epochs} | {held:.4f} |"
        )
    lines += ["", f"Machine: {machine()}", ""]
    (ROOT / "docs" / "fidelity.md").write_text("\n".join(lines))
    print(f"spearman {rho:.3f} (p {pval:.3f})")


if __name__ == "__main__":
    main()
