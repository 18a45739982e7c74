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

from .errors import RecipeError


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

    def check(self) -> None:
        if self.family != "llama":
            raise RecipeError(f"recipes pretrain Llama-architecture decoders only, not {self.family!r}")
        if self.hidden_size % self.num_heads:
            raise RecipeError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise RecipeError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")


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
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise RecipeError(f"{where}: unknown keys in [{section}]: {unknown}; known: {sorted(known)}")
            return kind(**data)

        if "name" not in raw:
            raise RecipeError(f"{where}: a recipe needs a name")
        source = raw.get("corpus", {}).get("source", "stdlib-docstrings")
        recipe = cls(name=raw["name"], description=raw.get("description", ""),
                     corpus=[source] if isinstance(source, str) else list(source),
                     tokenizer=build(TokenizerConfig, "tokenizer"), model=build(ArchConfig, "model"),
                     train=build(TrainConfig, "train"))
        recipe.model.check()
        if recipe.train.seq_len > recipe.model.context_length:
            raise RecipeError(f"{where}: seq_len {recipe.train.seq_len} exceeds context_length "
                              f"{recipe.model.context_length}")
        return recipe


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
