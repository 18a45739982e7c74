"""The one config check (roots_edge/core/config.py) that recipes, commands and the Python API share."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from roots_edge.core.config import FRACTION, POSITIVE, UNIT, build, option
from roots_edge.core.errors import RecipeError


@dataclass
class Example:
    steps: int = option(10, within=POSITIVE)
    lr: float | None = option(None, within=POSITIVE)
    keep: float = option(1.0, within=FRACTION)
    warmup: float = option(0.1, within=UNIT)
    layers: int | list[int] | None = None
    loss: str = option("mse", choices=("mse", "cosine"))
    fast: bool = False
    seed: int = 0

    def relations(self, where):
        if self.steps < 5 and self.fast:
            raise RecipeError(f"{where}: fast needs at least 5 steps")


@pytest.mark.parametrize("options, message", [
    ({"steps": 0}, "t.toml: [x] steps = 0: expected a positive integer"),
    ({"steps": 2.5}, "steps = 2.5: expected a positive integer"),
    ({"steps": True}, "steps = True: expected a positive integer"),
    ({"lr": float("nan")}, "lr = nan: expected a positive number"),
    ({"lr": "fast"}, "lr = 'fast': expected a positive number"),
    ({"keep": 0.0}, "keep = 0.0: expected the fraction to keep, in (0, 1]"),
    ({"keep": 1.5}, "the fraction to keep"),
    ({"warmup": 1.0}, "warmup = 1.0: expected a number in [0, 1)"),
    ({"layers": "2"}, "layers = '2': expected a non-negative integer or a list of integers"),
    ({"layers": [1, True]}, "expected a non-negative integer or a list of integers"),
    ({"loss": "l1"}, "loss = 'l1': expected one of ['mse', 'cosine']"),
    ({"fast": 1}, "fast = 1: expected true or false"),
    ({"seed": -1}, "seed = -1: expected a non-negative integer"),
    ({"speed": 3}, r"t.toml: unknown keys in [x]: ['speed']; known: ['fast', 'keep', 'layers', 'loss', 'lr', 'seed', "
                   r"'steps', 'warmup']"),
    ({"steps": 2, "fast": True}, "t.toml: [x]: fast needs at least 5 steps"),
])
def test_bad_settings_name_the_key_the_value_and_what_was_expected(options, message):
    with pytest.raises(RecipeError) as info:
        build(Example, options, "t.toml", "x")
    assert message in str(info.value)


def test_good_settings_build_the_dataclass():
    cfg = build(Example, {"steps": 5, "lr": 1e-3, "keep": 1, "layers": [0, 2], "fast": True}, "cli")
    assert (cfg.steps, cfg.lr, cfg.keep, cfg.layers, cfg.fast, cfg.loss) == (5, 1e-3, 1, [0, 2], True, "mse")
    with pytest.raises(RecipeError, match=r"^cli: steps = -1: expected a positive integer$"):
        build(Example, {"steps": -1}, "cli")
    with pytest.raises(RecipeError, match=r"t.toml: \[x\] must be a table of settings, not 5"):
        build(Example, 5, "t.toml", "x")


def test_every_user_facing_config_declares_its_ranges():
    """The recipe, finetuning, distillation and pruning configs all go through the same check."""
    from roots_edge.train.classifier import FinetuneConfig
    from roots_edge.train.distill import DistillConfig
    from roots_edge.train.prune import PruneConfig
    from roots_edge.train.recipe import ArchConfig, TrainConfig

    for kind, bad, message in [(FinetuneConfig, {"epochs": 0}, "epochs = 0"),
                               (DistillConfig, {"alpha": 1.5}, "alpha = 1.5: expected a number in [0, 1]"),
                               (DistillConfig, {"embed_loss": "l1"}, "expected one of ['cosine', 'mse']"),
                               (PruneConfig, {"ffn": 0}, "the fraction to keep"),
                               (PruneConfig, {"layers": [1, 1]}, "distinct layer indices"),
                               (ArchConfig, {"num_heads": 3}, "not a multiple of num_heads"),
                               (TrainConfig, {"beta2": 1.0}, "beta2 = 1.0: expected a number in [0, 1)")]:
        with pytest.raises(RecipeError) as info:
            build(kind, bad, "where")
        assert message in str(info.value)
        assert build(kind, {}, "where") == kind()
