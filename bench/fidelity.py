"""Does the search's low-fidelity ranking carry over to the final model's fidelity?

Draws ``--configs`` configurations from the quick space (seeded ``Space.sample``), scores each
twice on real blood cells, and prints the rank correlation (Spearman) between the two scores:

- search fidelity: the quick space's 3-fold cross-validation at 64 px, 4 epochs per fold, on the
  training images (what ``python -m search.run --study quick`` ranks by);
- final fidelity: close to what ``--budget`` trains for the final model: all training images at
  their own 96 px (every epoch: ``--budget`` trains its first half at the search's 64 px,
  ``trainer.final.Progressive``) under the default ``--final-augment robust`` with the light
  tail, a cosine schedule and the dihedral test-time views, for ``--epochs`` epochs. ``--budget`` fills the time it keeps
  for the final model (up to 96 epochs for the quick space under robust, as many as the time
  affords), so every configuration trains the same count here rather than the fewer that
  ``search.policy.budget.epochs_to_converge`` would take from its curves (that count, x2 for
  the stronger augmentation, is recorded beside it); scored on test images no configuration
  saw, clean and under ``trainer/corruptions.py``'s corruptions (``end_to_end.score``).

The images are the ``--dev`` split of ``bench/end_to_end.py`` (half to train, a sixth to test),
never its held-out quarter. Rewrites docs/fidelity.md (and docs/fidelity.json) after every
configuration, so a stopped run keeps what it measured; ``--only 2,5`` measures those
configurations again (and any not measured yet) and keeps the other rows; ``--page`` rewrites
the page from the JSON.

    python bench/fidelity.py [--configs 10] [--seed 0] [--epochs 20] [--only K,K] [--page]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from common import ROOT, machine  # noqa: I001
from end_to_end import load_split, score
from scipy.stats import kendalltau, spearmanr

from search.engine.finish import TAIL_LEVEL, TAIL_SHARE, final_tail
from search.policy.budget import OTHER_AUGMENT_EPOCH_FACTOR, epochs_to_converge
from spaces import SPACES, StudySettings
from trainer import Decision
from trainer.config import TrialConfig
from trainer.final import cosine_schedule, fit_all
from trainer.folds import make_folds
from trainer.train import train_trial
from trainer.views import views_for, with_views

FINAL_AUGMENT = "robust"  # search.run --budget's default --final-augment
PAGE, RESULTS = ROOT / "docs" / "fidelity.md", ROOT / "docs" / "fidelity.json"


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


def final_fidelity(config: TrialConfig, result, train, epochs: int):
    """Train ``config`` as ``--budget`` trains its final model for ``epochs``; return the model
    and the epochs its curves alone would ask for."""
    factor = OTHER_AUGMENT_EPOCH_FACTOR if config.augment != FINAL_AUGMENT else 1.0
    wanted, _ = epochs_to_converge(result.folds, "accuracy", config.epochs, factor)
    final = TrialConfig.from_dict(
        {**config.to_dict(), "image_size": 96, "epochs": epochs, "augment": FINAL_AUGMENT}
    )
    tail = final_tail(FINAL_AUGMENT)
    fitted = fit_all(final, train, epochs, lr_schedule=cosine_schedule(final, epochs), tail=tail)
    return with_views(fitted.model, views_for(FINAL_AUGMENT)), wanted


def correlations(rows: list[dict], key: str) -> tuple[float, float, float]:
    cv = [r["cv"] for r in rows]
    final = [r[key] for r in rows]
    rho, pval = spearmanr(cv, final)
    tau, _ = kendalltau(cv, final)
    return float(rho), float(pval), float(tau)


def write(rows: list[dict], args, split: str, n_train: int, n_test: int, minutes: float) -> None:
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
    command = (
        f"python bench/fidelity.py --configs {args.configs} --seed {args.seed} "
        f"--epochs {args.epochs}"
    )
    lines = [
        "# Fidelity: the search's ranking against the final model's",
        "",
        f"`{command}` ({minutes:.0f} min for {len(rows)} of {args.configs} configurations). "
        "Configurations drawn at random from the quick space, each scored at the search's "
        "fidelity (3-fold CV, 64 px, 4 epochs per fold, on the training images) and at a final "
        "fidelity close to `--budget`'s: all training images at 96 px in every epoch (`--budget` "
        "trains the first half of its epochs at the search's 64 px), augment "
        f"{FINAL_AUGMENT} with the last {TAIL_SHARE:.0%} of the epochs {TAIL_LEVEL}, cosine "
        f"schedule, {args.epochs} epochs for every configuration (`--budget` fills the time it "
        "keeps), dihedral test-time views; scored on test "
        f"images no configuration saw. Images: {n_train} to train, {n_test} to test ({split}).",
        "",
    ]
    if len(rows) >= 3:
        lines.append("| search CV accuracy against | Spearman | p | Kendall tau |")
        lines.append("|---|---:|---:|---:|")
        for key, what in (("clean", "final clean accuracy"), ("corrupted", "final corrupted")):
            rho, pval, tau = correlations(rows, key)
            lines.append(f"| {what} | {rho:.2f} | {pval:.3f} | {tau:.2f} |")
        lines.append("")
        pick = max(rows, key=lambda r: r["cv"])
        for key, what in (("clean", "clean"), ("corrupted", "corrupted")):
            ranked = sorted((r[key] for r in rows), reverse=True)
            lines.append(
                f"- {what}: the search's pick (configuration {pick['k']}, CV {pick['cv']:.4f}) is "
                f"{ranked.index(pick[key]) + 1} of {len(rows)} at the final fidelity, "
                f"{pick[key]:.4f} against the best {ranked[0]:.4f}"
            )
        lines.append("")
    lines += [
        "| config | backbone | augment searched | optimizer | lr | batch | search CV accuracy "
        "| final epochs (its curves alone: x2) | final clean | final corrupted | minutes |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['k']} | {r['backbone']} | {r['augment']} | {r['optimizer']} | "
            f"{r['learning_rate']:.2g} | {r['batch_size']} | {r['cv']:.4f} | {r['epochs']} "
            f"({r['wanted']}) | {r['clean']:.4f} | {r['corrupted']:.4f} | {r['minutes']:.1f} |"
        )
    lines += ["", f"Machine: {machine()}", ""]
    PAGE.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=20, help="the final model's epochs")
    p.add_argument("--only", default=None, help="comma-separated configurations to measure again")
    p.add_argument(
        "--page",
        action="store_true",
        help="rewrite the page from docs/fidelity.json, train nothing",
    )
    args = p.parse_args()
    train, test, split = load_split(dev=True, seed=0)
    rows: list[dict] = []
    if (args.only is not None or args.page) and RESULTS.exists():
        again = {int(k) for k in args.only.split(",")} if args.only else set()
        rows = [r for r in json.loads(RESULTS.read_text()) if r["k"] not in again]
    todo = [] if args.page else [k for k in range(args.configs) if k not in {r["k"] for r in rows}]
    if todo:
        measure(todo, rows, args, train, test, split)
    write(rows, args, split, len(train), len(test), sum(r["minutes"] for r in rows))
    for key in ("clean", "corrupted"):
        rho, pval, tau = correlations(rows, key)
        print(f"{key}: spearman {rho:.3f} (p {pval:.3f}), kendall {tau:.3f}")


def measure(todo: list[int], rows: list[dict], args, train, test, split: str) -> None:
    """Score configurations ``todo`` at both fidelities into ``rows``, rewriting the page after
    each."""
    from search.data.images import resize_all  # the search's Lanczos resize

    space = SPACES["quick"]
    small = type(train)(resize_all(train.images, space.image_size), train.labels, train.class_names)
    folds = make_folds(train.labels, space.folds, args.seed)
    settings = StudySettings(epochs=space.epochs, weights="none", seed=args.seed, image_size=64)
    for k in todo:
        began = time.monotonic()
        config = space.sample(_Draws(args.seed * 1000 + k), settings)
        result = train_trial(config, small, folds, lambda *a: Decision.CONTINUE, monitor="accuracy")
        cv = result.mean_score("accuracy")
        model, wanted = final_fidelity(config, result, train, args.epochs)
        scores = score(model, test)
        rows.append(
            {
                "k": k,
                **{n: getattr(config, n) for n in ("backbone", "augment", "optimizer")},
                "learning_rate": config.learning_rate,
                "batch_size": config.batch_size,
                "config": config.to_dict(),
                "cv": cv,
                "epochs": args.epochs,
                "wanted": wanted,
                "clean": scores["clean"],
                "corrupted": scores["corrupted"],
                "minutes": (time.monotonic() - began) / 60,
            }
        )
        print(f"config {k}: {config.backbone} {config.augment} {config.optimizer} "
              f"lr {config.learning_rate:.2g}: cv {cv:.4f}, final {args.epochs} epochs -> "
              f"{scores['clean']:.4f} clean, {scores['corrupted']:.4f} corrupted "
              f"({rows[-1]['minutes']:.1f} min)", flush=True)  # fmt: skip
        rows.sort(key=lambda r: r["k"])
        write(rows, args, split, len(train), len(test), sum(r["minutes"] for r in rows))


if __name__ == "__main__":
    main()
