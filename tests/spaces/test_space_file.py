"""load_space_file checks every field; a bad one is named with what was given and a fix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from spaces import SPACES, FakeSuggester, Space, StudySettings
from spaces.file import SpaceFileError, load_space_file
from tests.search.cli import run_cli
from trainer.config import TrialConfig
from trainer.folds import MAX_FOLDS

BASE = {"name": "mine", "description": "ranges", "backbones": ["small_cnn"]}
RANGES = ("learning_rate", "weight_decay", "l2", "dropout", "label_smoothing")


def refused(tmp_path: Path, **fields: object) -> str:
    path = tmp_path / "space.json"
    path.write_text(json.dumps({**BASE, **fields}))
    with pytest.raises(SpaceFileError) as info:
        load_space_file(path)
    message = str(info.value)
    assert message.startswith(f"space file {path}: "), message
    return message[len(f"space file {path}: ") :]


def test_a_reversed_learning_rate_names_the_pair_and_the_fix(tmp_path: Path) -> None:
    assert refused(tmp_path, learning_rate=[3e-3, 3e-4]) == (
        "learning_rate is [0.003, 0.0003], but low must be below high: write [0.0003, 0.003]"
    )


@pytest.mark.parametrize(
    "key, pair",
    [
        ("weight_decay", [1e-2, 1e-6]),
        ("l2", [1e-3, 1e-6]),
        ("dropout", [0.5, 0.1]),
        ("label_smoothing", [0.2, 0.0]),
    ],
)
def test_every_reversed_range_is_named_with_its_fix(tmp_path: Path, key: str, pair: list) -> None:
    message = refused(tmp_path, **{key: pair})
    assert message == (
        f"{key} is {json.dumps(pair)}, but low must be below high: write {json.dumps(pair[::-1])}"
    )


@pytest.mark.parametrize("key", ["learning_rate", "weight_decay", "l2"])
def test_log_scale_ranges_need_positive_ends(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, **{key: [0, 1e-3]})
    assert message.startswith(f"{key} is [0, 0.001], but it is sampled on a log scale, so ")
    assert "both ends must be above 0" in message and "e.g. [" in message
    assert "below high" not in refused(tmp_path, **{key: [-1e-3, 1e-3]})


@pytest.mark.parametrize(
    "key, pair, allowed",
    [
        ("dropout", [0.2, 1.0], "[0, 1)"),
        ("label_smoothing", [-0.1, 0.1], "[0, 1)"),
        ("learning_rate", [1e-3, 20], "(0, 10)"),
    ],
)
def test_ranges_outside_what_a_trial_accepts(
    tmp_path: Path, key: str, pair: list, allowed: str
) -> None:
    message = refused(tmp_path, **{key: pair})
    assert message.startswith(
        f"{key} is {json.dumps(pair)}, but each end must be in {allowed}: e.g. ["
    )


@pytest.mark.parametrize("value", [[1e-3], [1e-3, 2e-3, 3e-3], [1e-3, "a"], [True, 1], 0.001])
@pytest.mark.parametrize("key", RANGES)
def test_a_range_that_is_not_two_numbers(tmp_path: Path, key: str, value: object) -> None:
    message = refused(tmp_path, **{key: value})
    assert message.startswith(f"{key} must be a [low, high] pair of numbers, e.g. [")
    assert message.endswith(f"; got {json.dumps(value)}")


def test_infinite_ends_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(BASE)[:-1] + ', "learning_rate": [0.001, Infinity]}')
    with pytest.raises(SpaceFileError, match="learning_rate must be a .low, high. pair"):
        load_space_file(path)


def test_equal_ends_fix_the_value_and_valid_ranges_load(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    fields = {"learning_rate": [1e-3, 1e-3], "dropout": [0, 0.5], "label_smoothing": [0.1, 0.1]}
    path.write_text(json.dumps({**BASE, **fields}))
    space = load_space_file(path)
    assert space.learning_rate == (1e-3, 1e-3) and space.dropout == (0, 0.5)
    # Each end of every range is a value a trial accepts.
    for key in RANGES:
        for end in getattr(space, key):
            TrialConfig(backbone="small_cnn", **{key: end})


# -- every other field: one clear error naming the field, what was given and a fix -------------

SMALL = {"backbone": "small_cnn"}
MOBILE = {**BASE, "backbones": ["MobileNetV3Small", "MobileNetV3Large"]}


def case(fields: dict, field: str, given: str, fix: str, *, id: str) -> object:
    return pytest.param(fields, field, given, fix, id=id)


BAD = [
    # lists of choices
    case({"batch_sizes": ["32"]}, "batch_sizes", 'got ["32"]', "e.g. [32]", id="batch-text"),
    case({"batch_sizes": [32.0]}, "batch_sizes", "got [32.0]", "e.g. [32]", id="batch-float"),
    case(
        {"batch_sizes": [32.5]}, "batch_sizes", "got [32.5]", "e.g. [16, 32, 64]", id="batch-frac"
    ),
    case({"batch_sizes": [16, 0]}, "batch_sizes", "got [16, 0]", "e.g. [16, 32, 64]", id="batch-0"),
    case(
        {"batch_sizes": [True]}, "batch_sizes", "got [true]", "e.g. [16, 32, 64]", id="batch-bool"
    ),
    case({"batch_sizes": 32}, "batch_sizes", "got 32", "e.g. [32]", id="batch-scalar"),
    case({"batch_sizes": []}, "batch_sizes", "got []", "e.g. [16, 32, 64]", id="batch-empty"),
    case({"batch_sizes": [32, 32]}, "batch_sizes", "got [32, 32]", "e.g. [32]", id="batch-twice"),
    case({"head_widths": [-1]}, "head_widths", "got [-1]", "e.g. [0, 128, 256]", id="head-neg"),
    case(
        {"head_widths": [0, "64"]}, "head_widths", 'got [0, "64"]', "e.g. [0, 64]", id="head-text"
    ),
    case({"backbones": []}, "backbones", "got []", 'e.g. ["small_cnn"]', id="backbones-empty"),
    case(
        {"backbones": "small_cnn"},
        "backbones",
        'got "small_cnn"',
        'e.g. ["small_cnn"]',
        id="bb-str",
    ),
    case(
        {"backbones": ["mobilenetv3small"]},
        "backbones",
        'got ["mobilenetv3small"]',
        'e.g. ["MobileNetV3Small"]',
        id="backbones-case",
    ),
    case(
        {"backbones": ["ResNet"]},
        "backbones",
        'got ["ResNet"]',
        'e.g. ["small_cnn"]',
        id="bb-unknown",
    ),
    case(
        {"backbones": ["small_cnn", "small_cnn"]},
        "backbones",
        'got ["small_cnn", "small_cnn"]',
        'e.g. ["small_cnn"]',
        id="backbones-twice",
    ),
    case(
        {"augment_levels": ["extreme"]},
        "augment_levels",
        'got ["extreme"]',
        'e.g. ["none", "light", "moderate", "heavy", "robust"]',
        id="augment-unknown",
    ),
    case({"optimizers": ["Adam"]}, "optimizers", 'got ["Adam"]', 'e.g. ["adam"]', id="opt-case"),
    case(
        {"optimizers": ["adam", "sgd"]},
        "optimizers",
        'got ["adam", "sgd"]',
        'e.g. ["adam", "adamw", "lion", "ranger"]',
        id="optimizer-unknown",
    ),
    case({"class_weighting": [1]}, "class_weighting", "got [1]", "e.g. [true]", id="weighting-1"),
    case(
        {"class_weighting": ["yes"]},
        "class_weighting",
        'got ["yes"]',
        "e.g. [false, true]",
        id="weighting-yes",
    ),
    case(
        {"class_weighting": [True, True]},
        "class_weighting",
        "got [true, true]",
        "e.g. [true]",
        id="weighting-twice",
    ),
    # integers
    case({"image_size": 16}, "image_size", "got 16", "e.g. 96", id="size-small"),
    case({"image_size": 2048}, "image_size", "got 2048", "e.g. 96", id="size-large"),
    case({"image_size": "96"}, "image_size", 'got "96"', "e.g. 96", id="size-text"),
    case({"image_size": True}, "image_size", "got true", "e.g. 96", id="size-bool"),
    case({"folds": 1}, "folds", "got 1", "e.g. 5", id="folds-1"),
    case({"folds": 37}, "folds", "got 37", "e.g. 5", id="folds-37"),
    case({"folds": True}, "folds", "got true", "e.g. 5", id="folds-bool"),
    case({"folds": 2.5}, "folds", "got 2.5", "e.g. 5", id="folds-frac"),
    case({"epochs": 0}, "epochs", "got 0", "e.g. 15", id="epochs-0"),
    case({"epochs": "15"}, "epochs", 'got "15"', "e.g. 15", id="epochs-text"),
    case({"n_trials": 0}, "n_trials", "got 0", "e.g. 40", id="trials-0"),
    case({"n_trials": True}, "n_trials", "got true", "e.g. 40", id="trials-bool"),
    case({"patience": 0}, "patience", "got 0", "e.g. 4", id="patience-0"),
    case({"patience": None}, "patience", "got null", "e.g. 4", id="patience-null"),
    # strings
    case({"name": ""}, "name", 'got ""', 'e.g. "my-space"', id="name-empty"),
    case({"name": "my space!"}, "name", 'got "my space!"', 'e.g. "my-space"', id="name-spaces"),
    case({"name": "-x"}, "name", 'got "-x"', 'e.g. "x"', id="name-dash"),
    case({"name": "x" * 65}, "name", f'got "{"x" * 65}"', f'e.g. "{"x" * 64}"', id="name-long"),
    case({"name": 3}, "name", "got 3", 'e.g. "3"', id="name-number"),
    case({"description": 3}, "description", "got 3", 'e.g. "3"', id="description-number"),
    case({"weights": ""}, "weights", 'got ""', 'e.g. "imagenet"', id="weights-empty"),
    case(
        {"weights": "ImageNet"}, "weights", 'got "ImageNet"', 'e.g. "imagenet"', id="weights-case"
    ),
    case({"weights": 3}, "weights", "got 3", 'e.g. "imagenet"', id="weights-number"),
    case({"weights": None}, "weights", "got null", 'e.g. "none"', id="weights-null"),
    # starting points
    case(
        {"starting_points": SMALL},
        "starting_points",
        'got {"backbone": "small_cnn"}',
        'e.g. [{"backbone": "small_cnn"}]',
        id="points-object",
    ),
    case(
        {"starting_points": [1]},
        "starting_points",
        "got [1]",
        'e.g. [{"backbone": "small_cnn", "batch_size": 16}]',
        id="points-number",
    ),
    case(
        {"starting_points": [{}]},
        "starting_points[0]",
        "got {}",
        'e.g. {"backbone": "small_cnn"}',
        id="point-no-backbone",
    ),
    case(
        {"starting_points": [{"backbone": "MobileNetV3Small"}]},
        "starting_points[0].backbone",
        'got "MobileNetV3Small"',
        'e.g. "small_cnn"',
        id="point-other-backbone",
    ),
    case(
        {"starting_points": [{**SMALL, "batchsize": 32}]},
        "starting_points[0]",
        "['batchsize']",
        "did you mean 'batch_size'",
        id="point-unknown-key",
    ),
    case(
        {"starting_points": [{**SMALL, "unfreeze_small_cnn": 1}]},
        "starting_points[0]",
        "['unfreeze_small_cnn']",
        "valid for backbone small_cnn: ['augment', ",
        id="point-unfreeze-cnn",
    ),
    case(
        {
            **MOBILE,
            "starting_points": [{"backbone": "MobileNetV3Small", "unfreeze_MobileNetV3Large": 3}],
        },
        "starting_points[0]",
        "['unfreeze_MobileNetV3Large']",
        "'unfreeze_MobileNetV3Small'",
        id="point-unfreeze-other",
    ),
    case(
        {
            **MOBILE,
            "starting_points": [{"backbone": "MobileNetV3Small", "unfreeze_MobileNetV3Small": 20}],
        },
        "starting_points[0].unfreeze_MobileNetV3Small",
        "got 20",
        "e.g. 11",
        id="point-unfreeze-deep",
    ),
    case(
        {"starting_points": [{**SMALL, "batch_size": "32"}]},
        "starting_points[0].batch_size",
        'got "32"',
        "e.g. 32",
        id="point-batch-text",
    ),
    case(
        {"starting_points": [{**SMALL, "batch_size": 128}]},
        "starting_points[0].batch_size",
        "got 128",
        "e.g. 16",
        id="point-batch-choice",
    ),
    case(
        {"class_weighting": [True], "starting_points": [{**SMALL, "class_weighting": 1}]},
        "starting_points[0].class_weighting",
        "got 1",
        "e.g. true",
        id="point-weighting-1",
    ),
    case(
        {"starting_points": [{**SMALL, "learning_rate": 0.5}]},
        "starting_points[0].learning_rate",
        "got 0.5",
        "e.g. 0.003",
        id="point-lr-range",
    ),
    case(
        {"starting_points": [{**SMALL, "dropout": True}]},
        "starting_points[0].dropout",
        "got true",
        "e.g. 0.0",
        id="point-dropout-bool",
    ),
    case(
        {"starting_points": [SMALL, {**SMALL, "augment": "extreme"}]},
        "starting_points[1].augment",
        'got "extreme"',
        'e.g. "none"',
        id="second-point",
    ),
    # keys
    case(
        {"batch_size": [32]},
        "unknown keys ['batch_size']",
        "",
        "did you mean 'batch_sizes'",
        id="key",
    ),
]


@pytest.mark.parametrize("fields, field, given, fix", BAD)
def test_a_bad_field_is_named_with_what_was_given_and_a_fix(
    tmp_path: Path, fields: dict, field: str, given: str, fix: str
) -> None:
    message = refused(tmp_path, **fields)
    assert message.startswith(f"{field} "), message
    assert given in message and fix in message, message


def test_a_text_batch_size_reads_as_one_sentence(tmp_path: Path) -> None:
    assert refused(tmp_path, batch_sizes=["32"]) == (
        "batch_sizes must be a list of distinct integers >= 1 (at least one), e.g. [32]; "
        'got ["32"] ("32" is text, not an integer)'
    )


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"folds": 1}, "folds must be an integer from 2 to 36 (a study stores one character per "),
        ({"epochs": 0}, "epochs must be an integer >= 1, e.g. 15; got 0"),
        ({"backbones": ["ResNet"]}, 'unknown backbones ["ResNet"]'),
        ({"optimizers": ["adam", "sgd"]}, 'unknown optimizers ["sgd"]'),
        ({"batch_sizes": [16, 0]}, "(0 is not an integer >= 1)"),
        ({"batch_sizes": [32.0]}, "(32.0 is a decimal, not an integer)"),
        ({"head_widths": [0, 64, 64]}, "(64 appears twice)"),
        ({"class_weighting": ["yes"]}, '("yes" is not true or false)'),
        ({"batch_sizes": [True]}, "(true is a boolean, not an integer)"),
        ({"n_trials": True}, "(true is a boolean, not an integer)"),
    ],
)
def test_the_reason_is_spelled_out(tmp_path: Path, fields: dict, reason: str) -> None:
    assert reason in refused(tmp_path, **fields)


def test_true_is_not_1(tmp_path: Path) -> None:
    """JSON true passes Python's isinstance(x, int); no integer field may take it."""
    for key in ("image_size", "folds", "epochs", "n_trials", "patience"):
        assert refused(tmp_path, **{key: True}).startswith(f"{key} must be an integer")
    for key in ("head_widths", "batch_sizes"):
        assert "true is a boolean" in refused(tmp_path, **{key: [True]})
    point = {**SMALL, "head_width": False}
    assert refused(tmp_path, head_widths=[0], starting_points=[point]).startswith(
        "starting_points[0].head_width must be one of the space's choices [0], e.g. 0; got false"
    )


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(Space)])
def test_null_is_refused_for_every_field(tmp_path: Path, key: str) -> None:
    message = refused(tmp_path, **{key: None})
    assert message.startswith(f"{key} must be "), message
    assert "got null" in message and "e.g. " in message


def test_folds_stop_where_the_study_can_store_them(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    for folds in (2, MAX_FOLDS):
        path.write_text(json.dumps({**BASE, "folds": folds}))
        assert load_space_file(path).folds == folds
    assert f"from 2 to {MAX_FOLDS}" in refused(tmp_path, folds=MAX_FOLDS + 1)


@pytest.mark.parametrize("space", SPACES.values(), ids=list(SPACES))
def test_every_built_in_space_passes_as_a_file(tmp_path: Path, space: Space) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(dataclasses.asdict(space)))
    assert load_space_file(path) == space


def test_a_full_file_loads_and_its_starting_point_is_enqueued(tmp_path: Path) -> None:
    point = {
        "backbone": "MobileNetV3Small",
        "unfreeze_MobileNetV3Small": 3,
        "augment": "light",
        "optimizer": "adamw",
        "learning_rate": 1e-3,
        "weight_decay": 1e-4,
        "l2": 1e-5,
        "dropout": 0.2,
        "head_width": 64,
        "batch_size": 32,
        "label_smoothing": 0.0,
        "class_weighting": False,
    }
    fields = {
        **MOBILE,
        "name": "my-space.v2",
        "image_size": 64,
        "folds": 3,
        "epochs": 2,
        "n_trials": 5,
        "weights": "weights/mine.h5",
        "augment_levels": ["none", "light"],
        "optimizers": ["adamw"],
        "head_widths": [0, 64],
        "batch_sizes": [32],
        "class_weighting": [False],
        "patience": 1,
        "starting_points": [point, {"backbone": "MobileNetV3Large", "learning_rate": 3e-4}],
    }
    path = tmp_path / "space.json"
    path.write_text(json.dumps(fields))
    space = load_space_file(path)
    assert space.batch_sizes == (32,) and space.class_weighting == (False,)
    assert space.weights == "weights/mine.h5" and space.starting_points[0] == point
    settings = StudySettings(epochs=2, weights="imagenet", seed=0, image_size=64)
    config = space.sample(FakeSuggester(space.starting_params(settings)[0]), settings)
    assert config.unfreeze_depth == 3 and config.head_width == 64


def test_a_text_batch_size_is_one_error_line_from_the_command_line(tmp_path: Path) -> None:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    (work / "space.json").write_text(json.dumps({**BASE, "batch_sizes": ["32"]}))
    out = run_cli(
        "--space-file",
        "space.json",
        "--data",
        "demo",
        "--trainer",
        "fake",
        cwd=work,
        TMPDIR=str(tmp),
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr, out.stderr
    assert "batch_sizes must be a list of distinct integers >= 1" in out.stderr
    assert sorted(p.name for p in work.iterdir()) == ["space.json"]  # no studies.db, no artifacts/
    assert list(tmp.iterdir()) == []
