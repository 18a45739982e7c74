"""Training recipes: TOML files in `models/`, read into typed dataclasses."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from roots_edge.core.errors import RecipeError
from roots_edge.data.tokenizer import SPECIAL_TOKENS


@dataclass
class TokenizerConfig:
    vocab_size: int = 4096
    min_frequency: int = 2


@dataclass
class ArchConfig:
    family: str = "llama"
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    context_length: int = 256
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def check(self, where: str = "recipe") -> None:
        check_settings(self, "model", POSITIVE | {"rope_theta", "norm_eps"}, where)
        if self.family != "llama":
            raise RecipeError(f"{where}: recipes pretrain Llama-architecture decoders only, not {self.family!r}")
        if self.hidden_size % self.num_heads:
            raise RecipeError(f"{where}: hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise RecipeError(f"{where}: num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 1000
    batch_size: int = 4
    seq_len: int = 256
    lr: float = 3e-3
    warmup: float = 0.3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eval_every: int = 100
    patience: int = 3
    checkpoint_every: int = 100
    max_eval_tokens: int = 65536


# Bounds of the numeric settings; every other int must be >= 0.
POSITIVE = {"vocab_size", "min_frequency", "hidden_size", "intermediate_size", "num_layers", "num_heads",
            "num_kv_heads", "context_length", "steps", "batch_size", "seq_len", "lr", "eval_every",
            "checkpoint_every", "max_eval_tokens", "epochs", "max_length"}
UNIT = {"warmup": (0.0, 1.0, False), "min_lr_ratio": (0.0, 1.0, True), "beta1": (0.0, 1.0, False),
        "beta2": (0.0, 1.0, False), "val_fraction": (0.0, 1.0, False)}  # name -> (low, high, high included)


def check_settings(config, section: str, positive: set[str], where: str = "recipe") -> None:
    """Each field of a config dataclass has its declared type and a sensible value: a clear RecipeError
    naming the key, before any work (torch would fail minutes later, or silently train nothing)."""
    import math

    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), float if f.default is None else type(f.default)
        key = f"[{section}] {f.name} = {value!r}"
        if value is None and f.default is None:
            continue                                   # "the default for this model"
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            wanted = {bool: "true or false", int: "an integer", float: "a finite number"}.get(kind, "text")
            raise RecipeError(f"{where}: {key}: expected {wanted} (like {f.default!r})")
        if kind in (int, float):
            if f.name in positive and value <= 0:
                raise RecipeError(f"{where}: {key}: must be > 0")
            if f.name in UNIT:
                low, high, closed = UNIT[f.name]
                if not (low <= value <= high if closed else low <= value < high):
                    raise RecipeError(f"{where}: {key}: must be in [{low}, {high}{']' if closed else ')'}")
            if value < 0:
                raise RecipeError(f"{where}: {key}: must be >= 0")


def settings(kind, options: dict, where: str):
    """`kind(**options)` for a config dataclass, checked (unknown names and bad values: a RecipeError)."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise RecipeError(f"{where}: unknown options {unknown}; known: {sorted(known)}")
    config = kind(**options)
    check_settings(config, where, POSITIVE, where)
    return config


@dataclass
class Recipe:
    name: str
    description: str = ""
    corpus: list[str] = field(default_factory=lambda: ["stdlib-docstrings"])
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ArchConfig = field(default_factory=ArchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "recipe") -> "Recipe":
        def build(kind, section):
            data = raw.get(section, {})
            if not isinstance(data, dict):
                raise RecipeError(f"{where}: [{section}] must be a table of settings, not {data!r}")
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise RecipeError(f"{where}: unknown keys in [{section}]: {unknown}; known: {sorted(known)}")
            return kind(**data)

        if not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise RecipeError(f"{where}: a recipe needs a name (name = \"...\")")
        corpus = raw.get("corpus", {})
        source = corpus.get("source", "stdlib-docstrings") if isinstance(corpus, dict) else corpus
        sources = [source] if isinstance(source, str) else source
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            raise RecipeError(f"{where}: [corpus] source = {source!r}: expected a file path, a list of them, or "
                              f"\"stdlib-docstrings\"")
        recipe = cls(name=raw["name"], description=str(raw.get("description", "")), corpus=list(sources),
                     tokenizer=build(TokenizerConfig, "tokenizer"), model=build(ArchConfig, "model"),
                     train=build(TrainConfig, "train"))
        recipe.check(where)
        return recipe

    def check(self, where: str = "recipe") -> None:
        """Every setting of the right type and range (called again after command-line overrides)."""
        check_settings(self.tokenizer, "tokenizer", POSITIVE, where)
        check_settings(self.train, "train", POSITIVE, where)
        self.model.check(where)
        smallest = 256 + len(SPECIAL_TOKENS)
        if self.tokenizer.vocab_size < smallest:
            raise RecipeError(f"{where}: [tokenizer] vocab_size = {self.tokenizer.vocab_size}: a byte-level BPE "
                              f"needs at least {smallest} (256 bytes and the special tokens)")
        if self.train.seq_len > self.model.context_length:
            raise RecipeError(f"{where}: seq_len {self.train.seq_len} exceeds context_length "
                              f"{self.model.context_length}")


def builtin_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("roots_edge.models").iterdir() if p.name.endswith(".toml"))


def load_recipe(name_or_path: str | Path = "default") -> Recipe:
    """A built-in recipe by name (`default`) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        res = resources.files("roots_edge.models") / f"{name_or_path}.toml"
        if not res.is_file():
            raise RecipeError(f"no recipe {name_or_path!r}: give a .toml file or one of {builtin_recipes()}")
        text, where = res.read_text(encoding="utf-8"), f"models/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{where}: not valid TOML ({exc})") from None
    return Recipe.from_dict(raw, where)
