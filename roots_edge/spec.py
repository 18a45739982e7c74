"""The model families roots-edge supports, normalised once from a Hugging Face `config.json`.

Past this module nothing probes raw config keys: exporters and runtimes read a `ModelSpec`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import NotAModelError, UnsupportedModelError

# model_type -> architectures (as written in config.json) -> task
FAMILIES: dict[str, dict[str, str]] = {
    "llama": {
        "LlamaForCausalLM": "causal-lm",
        "LlamaForSequenceClassification": "classification",
    },
    "bert": {
        "BertModel": "embedding",
        "BertForSequenceClassification": "classification",
        "BertForMaskedLM": "embedding",
    },
}


def supported_summary() -> str:
    return "; ".join(f"{fam}: {', '.join(archs)}" for fam, archs in FAMILIES.items())


@dataclass(frozen=True)
class ModelSpec:
    family: str                 # "llama" (decoder) or "bert" (encoder)
    architecture: str           # the transformers class named in config.json
    task: str                   # "causal-lm", "classification" or "embedding"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    norm_eps: float
    rope_theta: float = 10000.0  # decoders only
    tie_embeddings: bool = False
    id2label: dict[int, str] = field(default_factory=dict)
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    @property
    def is_decoder(self) -> bool:
        return self.family == "llama"

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in sorted(self.id2label)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_hf_config(cls, cfg: dict, where: str = "config.json") -> "ModelSpec":
        model_type = cfg.get("model_type")
        archs = cfg.get("architectures") or []
        if model_type not in FAMILIES:
            raise UnsupportedModelError(
                f"{where}: model_type {model_type!r} is not supported. Supported families and "
                f"architectures: {supported_summary()}.")
        arch = next((a for a in archs if a in FAMILIES[model_type]), None)
        if arch is None:
            if archs:
                raise UnsupportedModelError(
                    f"{where}: architecture {archs} is not supported for {model_type}; "
                    f"supported: {', '.join(FAMILIES[model_type])}.")
            arch = next(iter(FAMILIES[model_type]))
        task = FAMILIES[model_type][arch]
        id2label = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
        if task != "classification":
            id2label = {}
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        if model_type == "llama":
            rope = cfg.get("rope_parameters") or {}
            theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
            return cls(
                family="llama", architecture=arch, task=task,
                vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                context_length=int(cfg.get("max_position_embeddings", 2048)),
                norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), id2label=id2label,
                bos_token_id=cfg.get("bos_token_id"), eos_token_id=_first(cfg.get("eos_token_id")),
                pad_token_id=cfg.get("pad_token_id"))
        return cls(
            family="bert", architecture=arch, task=task,
            vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]), num_heads=heads, num_kv_heads=heads,
            head_dim=hidden // heads, context_length=int(cfg.get("max_position_embeddings", 512)),
            norm_eps=float(cfg.get("layer_norm_eps", 1e-12)), id2label=id2label,
            pad_token_id=cfg.get("pad_token_id"))


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def read_spec(folder: str | Path) -> ModelSpec:
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise NotAModelError(f"{folder} is not a model folder: it has no config.json. Expected a "
                             "Hugging Face folder (config.json, model.safetensors, tokenizer.json).")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise NotAModelError(f"{cfg_path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return ModelSpec.from_hf_config(cfg, where=str(cfg_path))
    except KeyError as exc:
        raise NotAModelError(f"{cfg_path} lacks the key {exc.args[0]!r}; is this a complete model config?") from None
