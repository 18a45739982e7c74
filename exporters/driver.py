"""The export driver: source model -> artifact folder -> verification -> manifest, atomically."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from roots_edge.core.errors import DataError
from roots_edge.formats.manifest import FILE as MANIFEST
from roots_edge.formats.manifest import ARTIFACT, FileEntry, Manifest, SourceInfo, Verification
from roots_edge.core.paths import atomic_dir, check_output, sha256_file
from roots_edge.runtimes import facts as backend_facts
from roots_edge.runtimes.machine import verification_cpu
from roots_edge.core.spec import DECODER_FAMILIES

from roots_edge.exporters.base import ExportOptions, Source, Target, check_family, exporter_for, get_target
from roots_edge.exporters.quant import QuantConfig
from roots_edge.exporters.verify import verify


def heldout_texts(folder: Path, record: dict) -> list[str]:
    """The model's own validation text when its corpus is known, else the stdlib docstrings' validation split."""
    from roots_edge.data.corpora import text_corpus

    sources = (record.get("recipe") or {}).get("corpus") or ["stdlib-docstrings"]
    try:
        held = text_corpus(sources).val
    except DataError:               # the corpus was on another machine
        held = []
    return held or text_corpus("stdlib-docstrings").val


def load_source(model, *, calibration: Path | None = None) -> Source:
    """A `Source` from a model folder or from a model already loaded (a `LoadedModel`; a `LanguageModel` is one)."""
    from roots_edge.data.folder import LoadedModel, folder_hash

    if model is None:       # training the default model is the train layer's work, above the exporters
        raise DataError("load_source needs a model folder or a loaded model; for the embedded default model "
                        "pass LanguageModel.from_pretrained() (roots_edge.LanguageModel)")
    loaded = model if isinstance(model, LoadedModel) else LoadedModel.load(model)
    if loaded.path is None:
        raise DataError("export needs a model saved on disk: call save_pretrained(dir) first")
    if calibration is not None:
        from roots_edge.data.corpora import text_corpus

        heldout = text_corpus(calibration).documents
    else:
        heldout = heldout_texts(loaded.path, loaded.record)
    return Source(loaded, sha256=folder_hash(loaded.path), heldout=heldout)


def _split_texts(source: Source, options: ExportOptions) -> tuple[list[str], list[str]]:
    """(calibration, verification) texts: verification takes the last `verify_texts`, disjoint when possible."""
    texts = [t for t in (options.calibration or source.heldout) if t.strip()]
    if not texts:
        raise DataError("the calibration text is empty; give a file with text (.txt, .jsonl, .csv)")
    n = min(options.verify_texts, len(texts))
    verification = texts[-n:]
    calibration = texts[:-n] if len(texts) > n else texts
    return calibration, verification


def parameter_count(model) -> int:
    """Parameters of the PyTorch model, tied tensors counted once (`parameters()` yields a shared one once)."""
    return sum(p.numel() for p in model.parameters())


def bits_per_weight(weight_bytes: int, parameters: int) -> float:
    """Bits of the weight file(s) per parameter."""
    return round(8 * weight_bytes / parameters, 3)


QUANT_KEYS = frozenset(f.name for f in fields(QuantConfig)) - {"precision"}
LEGACY_KEYS = ("awq", "scale_estimation", "static_int8")   # option names from before the typed config


def configure(target: str | Target, family: str = "llama", *, spec=None, **settings) -> tuple[Target, ExportOptions]:
    """(target with its quantization settings changed, export options) from one flat set of keyword settings:
    `QuantConfig` fields (group_size, method, ratio, activations, classes), `ExportOptions` fields, and the
    older awq / scale_estimation (booleans, None = the format's default) and static_int8 flags. With the
    model's `spec`, the format checks the settings now (`Exporter.resolve`) rather than when its turn comes."""
    target = get_target(target) if isinstance(target, str) else target
    family = spec.family if spec is not None else family
    awq, se, static = (settings.pop(k, None) for k in LEGACY_KEYS)
    if static and target.format == "onnx" and target.precision == "int8":
        settings.setdefault("activations", "int8-static")
    if (awq is not None or se is not None) and target.format == "openvino" and target.precision == "int4":
        awq = family in DECODER_FAMILIES if awq is None else awq
        se = True if se is None else se
        settings.setdefault("method", "+".join([m for m, on in (("awq", awq), ("scale-estimation", se)) if on])
                            or "rtn")
    quant = {k: settings.pop(k) for k in list(settings) if k in QUANT_KEYS}
    unknown = set(settings) - {f.name for f in fields(ExportOptions)}
    if unknown:
        raise TypeError(f"unknown export setting(s) {sorted(unknown)}; quantization takes {sorted(QUANT_KEYS)}, "
                        f"export options {sorted(f.name for f in fields(ExportOptions))}")
    target, options = target.with_quant(**quant), ExportOptions(**settings)
    if spec is not None:
        resolved_for(target, spec, options)        # refuse now; the quant stays as given (resolved at export)
    return target, options


def resolved_for(target: Target, spec, options: ExportOptions) -> Target:
    """`target` with its quantization resolved for the model `spec`: the family supported, the settings possible."""
    check_family(target, spec)
    return replace(target, quant=exporter_for(target).resolve(target.quant, spec, options))


@dataclass(frozen=True)
class ExportJob:
    """One artifact to write, checked: the target with its quantization resolved for this model (the family
    supported, the settings possible), its options, and an output that may be written (absent, or with `force`
    an artifact folder holding nothing else)."""

    target: Target
    options: ExportOptions
    out: Path
    force: bool = False
    name: str = ""         # the target as the user typed it (`gguf-q4` for gguf-Q4_K_M)


def export_job(target: str | Target, spec, out: Path, options: ExportOptions | None = None, *,
               force: bool = False) -> ExportJob:
    """The one place a target meets a model: looked up, its family checked, its settings resolved, and its
    output checked, all before torch loads the model."""
    options = options or ExportOptions()
    target = resolved_for(get_target(target) if isinstance(target, str) else target, spec, options)
    return ExportJob(target, options, check_output(Path(out), force, ARTIFACT), force)


def plan_exports(targets: list[str | Target], spec, out: Path | Callable[[str, Target], Path], *, force: bool = False,
         **settings) -> list[ExportJob]:
    """The jobs of one export run from the model's `spec` and flat keyword settings (`configure`'s), each target
    once however often or under whichever name it was given. `out` is a folder (one target: the artifact
    itself; several: one subfolder per target, named as typed) or `out(typed_name, target)`."""
    typed: dict[Target, str] = {}
    for t in targets:
        typed.setdefault(get_target(t) if isinstance(t, str) else t, t if isinstance(t, str) else t.name)
    jobs = []
    for target, name in typed.items():
        dest = out(name, target) if callable(out) else Path(out) if len(typed) == 1 else Path(out) / name
        configured, options = configure(target, spec.family, **settings)
        jobs.append(replace(export_job(configured, spec, dest, options, force=force), name=name))
    return jobs


def run_exports(source: Source, jobs: list[ExportJob], *, reuse: bool = False, log=None) -> list[dict]:
    """Write, verify and describe each planned artifact (or, with `reuse`, keep one an earlier run of the same
    exporter wrote from the same weights). `log(line)` hears what happens to each."""
    log = log or (lambda _line: None)
    manifests = []
    for j in jobs:
        cached = reusable(j.out, j.target, source.sha256) if reuse else None
        log(f"{'reusing' if cached else 'exporting'} {j.target.name} {'at' if cached else '->'} {j.out}")
        manifests.append(cached or _write(source, j))
    return manifests


def export(source: Source, target: str | Target, out: Path, options: ExportOptions | None = None, *,
           force: bool = False, log=None) -> dict:
    """Write, verify and describe one artifact. Nothing is left at `out` unless all of it succeeded. `force`
    replaces an artifact folder already at `out`, never a folder holding anything an export does not write."""
    return run_exports(source, [export_job(target, source.spec, out, options, force=force)], log=log)[0]


def _write(source: Source, j: ExportJob) -> dict:
    target, options, out, force = j.target, j.options, j.out, j.force
    exporter = exporter_for(target)
    calibration, verification = _split_texts(source, options)
    opts = ExportOptions(**{**options.__dict__, "calibration": calibration})
    t0 = time.perf_counter()
    # format libraries (NNCF's progress bars, say) print to stdout: keep it clean for `--json` output
    with atomic_dir(out, replace=ARTIFACT if force else None) as tmp, contextlib.redirect_stdout(sys.stderr):
        extras = exporter.write(source, target, tmp, opts)
        seconds = time.perf_counter() - t0
        if options.verify:
            runtime = exporter.open(tmp, source, opts)
            result = verify(source, runtime, target, verification, enforce=not options.allow_drift)
            result["cpu"] = verification_cpu()  # int8 kernels differ between CPU classes (runtimes/machine.py)
            del runtime
        else:
            result = {"passed": None, "skipped": "--no-verify"}
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        weight_bytes = backend_facts(target.format).weight_bytes(tmp)     # the files its backend reads as weights
        parameters = parameter_count(source.model)
        manifest = Manifest(
            target=target.name, format=target.format, precision=target.precision, quant=target.quant.to_dict(),
            source=SourceInfo(path=str(source.folder), sha256=source.sha256, architecture=source.spec.architecture,
                              family=source.spec.family, task=source.spec.task, labels=source.spec.labels),
            files=[FileEntry(str(p.relative_to(tmp)), p.stat().st_size, sha256_file(p)) for p in files],
            size_bytes=sum(p.stat().st_size for p in files),
            bits_per_weight=bits_per_weight(weight_bytes, parameters),
            parameters=parameters,
            export_seconds=round(seconds, 2),
            verification=Verification(**result),
            versions=exporter.versions(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            exporter_revision=exporter.revision,
            details=extras,
        )
        manifest.write(tmp)
    return manifest.to_dict()


def reusable(artifact: Path, target: str | Target, source_sha256: str) -> dict | None:
    """The manifest of an artifact already at `artifact` that an export of `target` from the same weights,
    by this exporter revision, would write again (and that passed or skipped verification); else None."""
    target = get_target(target) if isinstance(target, str) else target
    m = Manifest.read(artifact)
    same = (m is not None and m.target == target.name and m.source.sha256 == source_sha256
            and m.exporter_revision == exporter_for(target).revision and m.verification.passed is not False)
    return m.to_dict() if same else None


def read_manifest(artifact: Path) -> dict:
    path = Path(artifact) / MANIFEST
    if not path.is_file():
        raise DataError(f"{artifact} has no {MANIFEST}: is it a roots-edge artifact?")
    return json.loads(path.read_text())


def verification_table(manifests: list[dict]) -> str:
    head = (f"{'target':<16}{'size':>10}{'bits/w':>8}{'max|dlogit|':>13}{'KL':>10}{'top-1/agree':>13}{'ppl +%':>8}"
            f"{'time':>8}  method / status")
    lines = [head, "-" * len(head)]
    for m in manifests:
        v = m["verification"]
        met = v.get("metrics", {})
        agree = met.get("top1", met.get("agreement", met.get("min_cosine")))
        status = "skipped" if v.get("passed") is None else ("ok" if v["passed"] else "DRIFT")
        fmt = lambda x, f: format(x, f) if x is not None else format("-", ">" + f[1:].split(".")[0])  # noqa: E731
        ppl, ref = met.get("perplexity"), met.get("perplexity_ref")
        delta = f"{100 * (ppl / ref - 1):>+8.2f}" if ppl and ref else f"{'-':>8}"
        method = (m.get("quant") or {}).get("method")
        lines.append(f"{m['target']:<16}{m['size_bytes'] / 1e6:>8.2f}MB{m['bits_per_weight']:>8.2f}"
                     f"{fmt(met.get('max_logit_diff'), '>13.3g')}{fmt(met.get('kl'), '>10.2e')}"
                     f"{fmt(agree, '>13.4f')}{delta}{m['export_seconds']:>7.1f}s  "
                     f"{method + ' / ' if method and method != 'none' else ''}{status}")
    return "\n".join(lines)
