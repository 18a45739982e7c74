"""The model families roots-edge supports, normalised once from a Hugging Face `config.json`.

Past this module nothing probes raw config keys: exporters and runtimes read a `ModelSpec`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from roots_edge.core.errors import CorruptModelError, NotAModelError, UnsupportedModelError

@dataclass(frozen=True)
class Family:
    """One model family: what config.json calls it and what sets it apart. Exporters and runtimes read
    these facts instead of special-casing family names."""

    name: str                       # what roots-edge calls it ("llama", "qwen2", ...)
    model_type: str                 # config.json's model_type
    architectures: dict[str, str]   # transformers class -> task
    decoder: bool = True
    gguf_arch: str | None = None    # llama.cpp's architecture name
    rope_permute: bool = False      # llama.cpp's `llama` arch wants Q/K rows interleaved per head
    qkv_bias: bool = False          # biases on the query / key / value projections
    qk_norm: bool = False           # RMSNorm on queries and keys per head
    norm_plus_one: bool = False     # RMSNorm computes (1 + w) * x: llama.cpp stores w + 1
    sliding_window: bool = False    # some layers attend over a window only
    embed_scale: bool = False       # embeddings multiplied by sqrt(hidden)
    tied_by_default: bool = False   # transformers' default tie_word_embeddings (config.json omits defaults)


FAMILY_LIST = (
    Family("llama", "llama", {"LlamaForCausalLM": "causal-lm", "LlamaForSequenceClassification": "classification"},
           gguf_arch="llama", rope_permute=True),
    Family("qwen2", "qwen2", {"Qwen2ForCausalLM": "causal-lm", "Qwen2ForSequenceClassification": "classification"},
           gguf_arch="qwen2", qkv_bias=True),
    Family("qwen3", "qwen3", {"Qwen3ForCausalLM": "causal-lm", "Qwen3ForSequenceClassification": "classification"},
           gguf_arch="qwen3", qk_norm=True),
    Family("gemma3", "gemma3_text", {"Gemma3ForCausalLM": "causal-lm"}, gguf_arch="gemma3", qk_norm=True,
           norm_plus_one=True, sliding_window=True, embed_scale=True, tied_by_default=True),
    Family("bert", "bert", {"BertModel": "embedding", "BertForSequenceClassification": "classification",
                            "BertForMaskedLM": "embedding"}, decoder=False, gguf_arch="bert"),
)
FAMILIES: dict[str, Family] = {f.name: f for f in FAMILY_LIST}
BY_MODEL_TYPE: dict[str, Family] = {f.model_type: f for f in FAMILY_LIST}
DECODER_FAMILIES = tuple(f.name for f in FAMILY_LIST if f.decoder)
ENCODER_FAMILIES = tuple(f.name for f in FAMILY_LIST if not f.decoder)


def supported_summary() -> str:
    return "; ".join(f"{f.name}: {', '.join(f.architectures)}" for f in FAMILY_LIST)


@dataclass(frozen=True)
class ModelSpec:
    family: str                 # a `FAMILIES` name: "llama", "qwen2", "qwen3", "gemma3" (decoders), "bert"
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

    sliding_window: int | None = None   # tokens a sliding-window layer attends over (gemma3)

    @property
    def traits(self) -> Family:
        return FAMILIES[self.family]

    @property
    def is_decoder(self) -> bool:
        return FAMILIES[self.family].decoder

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in sorted(self.id2label)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_hf_config(cls, cfg: dict, where: str = "config.json") -> "ModelSpec":
        model_type = cfg.get("model_type")
        archs = cfg.get("architectures") or []
        family = BY_MODEL_TYPE.get(model_type)
        if family is None:
            raise UnsupportedModelError(
                f"{where}: model_type {model_type!r} is not supported. Supported families and "
                f"architectures: {supported_summary()}.")
        arch = next((a for a in archs if a in family.architectures), None)
        if arch is None:
            if archs:
                raise UnsupportedModelError(
                    f"{where}: architecture {archs} is not supported for {model_type}; "
                    f"supported: {', '.join(family.architectures)}.")
            arch = next(iter(family.architectures))
        task = family.architectures[arch]
        id2label = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
        if task != "classification":
            id2label = {}
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        common = dict(family=family.name, architecture=arch, task=task, vocab_size=int(cfg["vocab_size"]),
                      hidden_size=hidden, intermediate_size=int(cfg["intermediate_size"]),
                      num_layers=int(cfg["num_hidden_layers"]), num_heads=heads, id2label=id2label,
                      pad_token_id=cfg.get("pad_token_id"))
        if family.decoder:
            rope = cfg.get("rope_parameters") or {}
            if "full_attention" in rope:            # per layer type (gemma3): the global layers' base
                rope = rope["full_attention"]
            theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
            return cls(**common,
                       num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                       head_dim=int(cfg.get("head_dim") or hidden // heads),
                       context_length=int(cfg.get("max_position_embeddings", 2048)),
                       norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_theta=float(theta),
                       tie_embeddings=bool(cfg.get("tie_word_embeddings", family.tied_by_default)),
                       bos_token_id=cfg.get("bos_token_id"), eos_token_id=_first(cfg.get("eos_token_id")),
                       sliding_window=cfg.get("sliding_window") if family.sliding_window else None)
        return cls(**common, num_kv_heads=heads, head_dim=hidden // heads,
                   context_length=int(cfg.get("max_position_embeddings", 512)),
                   norm_eps=float(cfg.get("layer_norm_eps", 1e-12)))


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
    except UnicodeDecodeError:
        raise CorruptModelError(f"{cfg_path} is not UTF-8 text: the file is damaged; copy or download it "
                                f"again") from None
    if not isinstance(cfg, dict):
        raise CorruptModelError(f"{cfg_path} holds a JSON {type(cfg).__name__}, not the object a model config "
                                f"is ({{\"model_type\": ..., \"hidden_size\": ...}})")
    for key in SIZE_KEYS:
        value = cfg.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            raise CorruptModelError(f"{cfg_path}: {key} = {value!r}; expected a positive integer")
    try:
        return ModelSpec.from_hf_config(cfg, where=str(cfg_path))
    except KeyError as exc:
        raise NotAModelError(f"{cfg_path} lacks the key {exc.args[0]!r}; is this a complete model config?") from None
    except (ValueError, TypeError, AttributeError, ZeroDivisionError) as exc:
        raise CorruptModelError(f"{cfg_path} has a value of the wrong kind ({exc}); is it a Hugging Face model "
                                f"config?") from None


SIZE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings")
