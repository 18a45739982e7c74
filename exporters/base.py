"""The exporter seam: targets (a format and a typed `QuantConfig`), the registry, sources and export options.

A format is one `Exporter` subclass in its own module; it registers itself and its targets where it
is defined (`class OnnxExporter(Exporter, format="onnx")`). The CLI's `--target` choices and every
"unknown target" message come from this registry, never from a second list.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from roots_edge.core.errors import TargetError, UnsupportedModelError

from roots_edge.exporters.imatrix import MAX_TOKENS
from roots_edge.exporters.quant import QuantConfig

FORMAT_MODULES = ("onnx", "openvino", "gguf")  # roots_edge.exporters.<name>, imported to fill the registry


@dataclass(frozen=True)
class Bound:
    """How far an artifact may drift from the PyTorch reference and still pass verification.

    Decoders: `max_logit_diff` (float targets), `kl` (mean KL(reference || artifact) per position) and
    `top1` (share of positions where the argmax agrees). Classifiers: `agreement` (share of equal
    predicted labels). None means "not checked".
    """

    max_logit_diff: float | None = None
    kl: float | None = None
    top1: float | None = None
    agreement: float | None = None
    cosine: float | None = None     # embedding encoders: smallest cosine similarity


# Documented bounds per precision class (README "Verification bounds"). Measured drift on the default
# model sits well inside them; they are loose enough for near-tied logits on small models.
FLOAT32 = (Bound(max_logit_diff=5e-3, top1=0.995), Bound(agreement=0.99, cosine=0.9999))
HALF = (Bound(max_logit_diff=0.15, kl=2e-3, top1=0.97), Bound(agreement=0.99, cosine=0.999))
INT8 = (Bound(kl=1e-2, top1=0.93), Bound(agreement=0.9, cosine=0.98))
INT6_5 = (Bound(kl=2e-2, top1=0.9), Bound(agreement=0.9, cosine=0.97))
INT4 = (Bound(kl=8e-2, top1=0.8), Bound(agreement=0.85, cosine=0.93))
INT3 = (Bound(kl=0.25, top1=0.65), Bound(agreement=0.75, cosine=0.85))
INT2 = (Bound(kl=0.6, top1=0.5), Bound(agreement=0.6, cosine=0.7))


@dataclass(frozen=True)
class Target:
    """A format and how it quantizes (`quant`), with the families it exports and its drift bounds."""

    name: str                 # what users type: "onnx-int8", "gguf-Q4_K_M"
    format: str               # "onnx", "openvino", "gguf"
    quant: QuantConfig        # precision, method, group size, activations, per-tensor-class precisions
    families: tuple[str, ...]  # model families this target exports
    decoder_bound: Bound = Bound()
    classifier_bound: Bound = Bound()
    aliases: tuple[str, ...] = ()
    quantized: bool = False

    @property
    def precision(self) -> str:
        return self.quant.precision

    def bound_for(self, is_decoder: bool) -> Bound:
        return self.decoder_bound if is_decoder else self.classifier_bound

    def with_quant(self, **changes) -> "Target":
        """This target with its quantization config changed (None values keep the current setting)."""
        return replace(self, quant=self.quant.with_(**changes))

    @classmethod
    def many(cls, fmt: str, **precisions: tuple[tuple[str, ...], tuple[Bound, Bound]]) -> tuple["Target", ...]:
        """One target per `precision=(families, bounds)`."""
        return tuple(cls.make(fmt, p, families, bounds) for p, (families, bounds) in precisions.items())

    @classmethod
    def make(cls, fmt: str, precision: str, families: tuple[str, ...], bounds: tuple[Bound, Bound],
             aliases: tuple[str, ...] = (), **quant) -> "Target":
        return cls(f"{fmt}-{precision}", fmt, QuantConfig(precision, **quant), families, bounds[0], bounds[1],
                   aliases, quantized=bounds not in (FLOAT32, HALF))


@dataclass
class ExportOptions:
    """What an export run does besides quantizing (that is the target's `QuantConfig`)."""

    calibration: list[str] = field(default_factory=list)  # texts for data-aware methods and verification
    opset: int = 21                # ONNX: 21 lets onnx-int4 store the embedding in 4 bits too
    verify: bool = True
    allow_drift: bool = False
    verify_texts: int = 16          # held-out texts used for verification
    threads: int | None = None
    data_free: bool = False         # --no-calibration: data-free rounding where a format defaults to data-aware
    calibration_tokens: int = MAX_TOKENS  # tokens the data-aware passes (importance matrix, GPTQ) read at most


@dataclass
class Source:
    """The model being exported (a saved `LoadedModel`: the PyTorch reference, its spec and folder), the hash of
    its weights, and the texts it is calibrated and verified on."""

    loaded: object  # roots_edge.data.folder.LoadedModel, saved (its path is set)
    sha256: str
    heldout: list[str] = field(default_factory=list)  # verification / calibration texts
    # work shared by the targets of one export run: reference outputs per text, a converted graph, ...
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return self.loaded.path

    @property
    def spec(self):          # roots_edge.core.spec.ModelSpec
        return self.loaded.spec

    @property
    def model(self):         # transformers PreTrainedModel, eval mode, float32
        return self.loaded.model

    @property
    def tokenizer(self):     # transformers fast tokenizer
        return self.loaded.tokenizer

    def cached(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


class Exporter:
    """One per format. Subclasses declare `targets` and implement `write` and `open`."""

    registry: ClassVar[dict[str, type["Exporter"]]] = {}
    format: ClassVar[str]
    targets: ClassVar[tuple[Target, ...]] = ()
    packages: ClassVar[tuple[str, ...]] = ()  # libraries whose versions the manifest records
    # Bump when what an export writes changes (a new quantized form, say): cached artifacts of an older
    # revision are then rebuilt instead of reused (`driver.reusable`).
    revision: ClassVar[int] = 1

    def __init_subclass__(cls, format: str, **kw):
        super().__init_subclass__(**kw)
        cls.format = format
        Exporter.registry[format] = cls

    def resolve(self, quant: QuantConfig, spec, options: ExportOptions) -> QuantConfig:
        """`quant` with this format's defaults for the model filled in (method, group size, per-class
        precisions), as the manifest records it; refuses what the format cannot do, before any work."""
        return quant

    def write(self, source: Source, target: Target, out: Path, options: ExportOptions) -> dict:
        """Write the artifact's files into the (temporary) folder `out`; return manifest extras."""
        raise NotImplementedError

    def open(self, out: Path, source: Source, options: ExportOptions):
        """The runtime backend of this format over the artifact in `out`, on the CPU (where parity is
        measured), with an f32 KV cache: `logits(ids)` for decoders, `classify_logits(texts)` / `embed(texts)` for encoders."""
        from roots_edge.runtimes import backend_class

        return backend_class(self.format)(out, device="cpu", threads=options.threads, exact=True)

    def versions(self) -> dict:
        from roots_edge.core.versions import versions

        return versions(self.packages)


SUPPORT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "chat_template.jinja")


def copy_support_files(source: Source, out: Path) -> None:
    """The model's config and tokenizer beside the model file: the artifact runs without the source folder."""
    import shutil

    for name in SUPPORT_FILES:
        if (Path(source.folder) / name).is_file():
            shutil.copyfile(Path(source.folder) / name, out / name)
    if not (out / "tokenizer.json").is_file():  # a folder with only vocab.txt: write the fast tokenizer's form
        source.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))


def _load_formats() -> None:
    for name in FORMAT_MODULES:
        importlib.import_module(f"roots_edge.exporters.{name}")


def all_targets() -> dict[str, Target]:
    _load_formats()
    out: dict[str, Target] = {}
    for cls in Exporter.registry.values():
        for t in cls.targets:
            out[t.name] = t
            for a in t.aliases:
                out[a] = t
    return out


def target_names() -> list[str]:
    """The canonical target names (aliases left out), for help texts and error messages."""
    _load_formats()
    return [t.name for cls in Exporter.registry.values() for t in cls.targets]


def get_target(name: str) -> Target:
    targets = all_targets()
    key = name if name in targets else next((k for k in targets if k.lower() == name.lower()), None)
    if key is None:
        raise TargetError(f"unknown target {name!r}. Valid targets: {', '.join(target_names())}")
    return targets[key]


def exporter_for(target: Target) -> Exporter:
    return Exporter.registry[target.format]()


def check_family(target: Target, spec) -> None:
    if spec.family not in target.families:
        supported = {t.name: t.families for t in all_targets().values() if spec.family in t.families}
        raise UnsupportedModelError(
            f"target {target.name} does not export {spec.family} models ({spec.architecture}); it supports "
            f"{', '.join(target.families)}. Targets for {spec.family}: {', '.join(sorted(supported))}")
