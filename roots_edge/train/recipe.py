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

from roots_edge.core.config import POSITIVE, PROBABILITY, UNIT, build, check, option
from roots_edge.core.errors import RecipeError
from roots_edge.data.tokenizer import SPECIAL_TOKENS


@dataclass
class TokenizerConfig:
    vocab_size: int = option(4096, within=POSITIVE)
    min_frequency: int = option(2, within=POSITIVE)


@dataclass
class ArchConfig:
    family: str = option("llama", choices=("llama",), what='"llama" (recipes pretrain Llama-architecture decoders)')
    hidden_size: int = option(256, within=POSITIVE)
    intermediate_size: int = option(768, within=POSITIVE)
    num_layers: int = option(2, within=POSITIVE)
    num_heads: int = option(4, within=POSITIVE)
    num_kv_heads: int = option(2, within=POSITIVE)
    context_length: int = option(256, within=POSITIVE)
    tie_embeddings: bool = True
    rope_theta: float = option(10000.0, within=POSITIVE)
    norm_eps: float = option(1e-5, within=POSITIVE)

    def relations(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise RecipeError(f"{where}: hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise RecipeError(f"{where}: num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = option(1000, within=POSITIVE)
    batch_size: int = option(4, within=POSITIVE)
    seq_len: int = option(256, within=POSITIVE)
    lr: float = option(3e-3, within=POSITIVE)
    warmup: float = option(0.3, within=UNIT)
    min_lr_ratio: float = option(0.1, within=PROBABILITY)
    weight_decay: float = 0.1
    beta1: float = option(0.9, within=UNIT)
    beta2: float = option(0.95, within=UNIT)
    eval_every: int = option(100, within=POSITIVE)
    patience: int = 3
    checkpoint_every: int = option(100, within=POSITIVE)
    max_eval_tokens: int = option(65536, within=POSITIVE)


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
        if not isinstance(raw.get("name"), str) or not raw["name"].strip():
            raise RecipeError(f"{where}: a recipe needs a name (name = \"...\")")
        corpus = raw.get("corpus", {})
        source = corpus.get("source", "stdlib-docstrings") if isinstance(corpus, dict) else corpus
        sources = [source] if isinstance(source, str) else source
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            raise RecipeError(f"{where}: [corpus] source = {source!r}: expected a file path, a list of them, or "
                              f"\"stdlib-docstrings\"")
        recipe = cls(name=raw["name"], description=str(raw.get("description", "")), corpus=list(sources),
                     tokenizer=build(TokenizerConfig, raw.get("tokenizer", {}), where, "tokenizer"),
                     model=build(ArchConfig, raw.get("model", {}), where, "model"),
                     train=build(TrainConfig, raw.get("train", {}), where, "train"))
        recipe.check(where)
        return recipe

    def check(self, where: str = "recipe") -> None:
        """Every setting of the right type and range (called again after command-line overrides)."""
        for section in ("tokenizer", "model", "train"):
            check(getattr(self, section), where, section)
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
