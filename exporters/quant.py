"""Typed quantization: what a target does to each class of tensor, in one value every format reads.

A target is (format, `QuantConfig`). The config names a precision for the weights as a whole, the method
that rounds them, the block (group) size and what happens to activations, and may give another precision
to a whole class of tensors:

    embeddings   the token (and position / type) embedding tables
    output       the LM head, a classifier or pooler head
    attention    query / key / value / output projections
    ffn          the feed-forward matrices (gate, up, down; BERT's intermediate and output dense)
    attention_v  within attention, the value projection (decoders)
    ffn_down     within ffn, the down projection (decoders)

Precisions are the generic "fp32", "fp16", "int8", "int6", "int4" (or, for GGUF, a ggml type such as
"Q6_K"). A format honours the per-class precisions its tools can express and refuses the others with a
message that says which it can (`Unsupported`); the manifest records the config as it was applied.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from roots_edge.core.errors import TargetError

# finer classes inside attention / ffn: the matrices llama.cpp's Q4_K_M gives more bits (its attn_v and
# ffn_down rule); a format that has no use for them treats them as their parent class
SUBCLASSES = {"attention_v": "attention", "ffn_down": "ffn"}
TENSOR_CLASSES = ("embeddings", "output", "attention", "ffn", *SUBCLASSES)

# Tensor names across the three formats' naming schemes (torch module paths in ONNX / OpenVINO node
# names, llama.cpp's GGUF names), checked in this order: BERT's attention output dense before its FFN one.
_CLASS_PATTERNS = (
    ("embeddings", re.compile(r"embed|token_embd|tok_embeddings|wte|position_embd|token_types")),
    ("output", re.compile(r"lm_head|(^|[./])output\.weight$|^output$|classifier|pooler|score|cls[./]")),
    ("attention", re.compile(r"attn|attention|q_proj|k_proj|v_proj|o_proj|query|key|value")),
    ("ffn", re.compile(r"mlp|ffn|intermediate|gate_proj|up_proj|down_proj|(^|[./])output[./]dense")),
)


_SUBCLASS_PATTERNS = (("attention_v", re.compile(r"v_proj|attn_v\.|[./]value[./]")),
                      ("ffn_down", re.compile(r"down_proj|ffn_down|(^|[./])output[./]dense")))   # BERT: output.dense


def tensor_class(name: str, fine: bool = False) -> str | None:
    """The class of a weight from its name in any of the formats' naming schemes; None when unknown.
    `fine`: "attention_v" / "ffn_down" for the decoder matrices of those subclasses."""
    for cls, pattern in _CLASS_PATTERNS:
        if pattern.search(name):
            if fine:
                for sub, sub_pattern in _SUBCLASS_PATTERNS:
                    if SUBCLASSES[sub] == cls and sub_pattern.search(name):
                        return sub
            return cls
    return None


def bits_of(precision: str) -> int | None:
    """Nominal bits of a generic precision ("int4" -> 4, "fp16" -> 16)."""
    m = re.fullmatch(r"(?:int|fp)(\d+)", precision)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class QuantConfig:
    """How a target quantizes. `precision` is the target's own ("int4", "Q4_K_M", "fp16", ...)."""

    precision: str
    method: str | None = None       # weight rounding: "rtn", "imatrix" (GGUF), "hqq" (ONNX int4), "awq",
    #                                 "scale-estimation", "gptq" (OpenVINO int4, joined by "+");
    #                                 None: the format's default for the model's family (recorded once applied)
    group_size: int | None = None   # block / group size along the input axis; None: the format's default
    activations: str = "float"      # "float", "int8-dynamic", "int8-static" (calibrated), "int8-blocks" (kernel)
    ratio: float | None = None      # NNCF int4: share of the eligible weights in 4 bits (the rest int8);
    #                                 None: the format's default (OpenVINO: 0.6)
    classes: dict[str, str] = field(default_factory=dict, hash=False)  # tensor class -> precision (overrides)

    def __post_init__(self):
        unknown = set(self.classes) - set(TENSOR_CLASSES)
        if unknown:
            raise TargetError(f"unknown tensor class(es) {sorted(unknown)}; the classes are "
                              f"{', '.join(TENSOR_CLASSES)}")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise TargetError(f"ratio {self.ratio} is outside (0, 1]: it is the share of weights kept in 4 bits")

    def precision_of(self, cls: str | None) -> str:
        """The precision of a tensor of class `cls` (None: unclassified, the target's own); a subclass without
        its own precision takes its parent's."""
        if not cls:
            return self.precision
        if cls in self.classes:
            return self.classes[cls]
        parent = SUBCLASSES.get(cls)
        return self.classes.get(parent, self.precision) if parent else self.precision

    def methods(self) -> set[str]:
        return set((self.method or "").split("+")) - {""}

    def with_(self, **changes) -> "QuantConfig":
        """A copy with `changes`; None values keep the current setting, `classes` are merged in."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "classes" in changes:
            changes["classes"] = {**self.classes, **changes["classes"]}
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


class Unsupported:
    """Refusals for settings a format cannot express, with the ones it can: nothing is silently ignored."""

    @staticmethod
    def method(quant: QuantConfig, fmt: str, allowed: tuple[str, ...] = ("rtn",)) -> None:
        if quant.method not in (None, "none", *allowed):
            raise TargetError(f"{fmt}-{quant.precision} rounds weights by {' or '.join(allowed)}; "
                              f"method {quant.method!r} is not one of them (gguf quant types take imatrix; onnx-int4 "
                              "takes hqq; openvino-int4 takes awq, scale-estimation, gptq)")
        if quant.ratio not in (None, 1.0):
            raise TargetError(f"{fmt}-{quant.precision} has no ratio setting (openvino-int4 does); got {quant.ratio}")

    @staticmethod
    def group_size(quant: QuantConfig, fmt: str, why: str) -> None:
        if quant.group_size is not None:
            raise TargetError(f"{fmt}-{quant.precision} has no group size setting ({why}); got {quant.group_size}")

    @staticmethod
    def check(quant: QuantConfig, fmt: str, allowed: dict[str, tuple[str, ...]]) -> None:
        for cls, precision in quant.classes.items():
            ok = allowed.get(cls, ())
            if precision != quant.precision and precision not in ok:
                choices = ", ".join(ok) or f"only the target's own ({quant.precision})"
                raise TargetError(f"{fmt}-{quant.precision} cannot put {cls} tensors in {precision}; "
                                  f"{cls} can be: {choices}")


def parse_classes(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """CLI `--tensor CLASS=PRECISION` values -> {class: precision}."""
    out = {}
    for pair in pairs:
        cls, sep, precision = pair.partition("=")
        if not sep or not precision:
            raise TargetError(f"--tensor takes CLASS=PRECISION (e.g. output=int8); got {pair!r}")
        out[cls.strip().lower()] = precision.strip()
    QuantConfig("any", classes=out)  # validates the class names
    return out
