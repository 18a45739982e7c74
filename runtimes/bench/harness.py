"""The benchmark harness behind `roots-edge bench`.

Each artifact is measured in its own subprocess (`python -m roots_edge.runtimes.bench.worker`), so load
time and peak resident memory are its own. Decoder metrics are named as llama-bench names them (`pp128`,
`tg64`, t/s mean ± sd) plus TTFT / TPOT as OpenVINO GenAI reports them; quality is measured on held-out
text against the reference model's logits on the same token ids.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from roots_edge.core.errors import BenchError, RootsEdgeError
from roots_edge.formats.manifest import Manifest

from roots_edge.core.metrics import LogitDrift
from roots_edge.runtimes.devices import DEVICES


@dataclass
class BenchConfig:
    prompt_tokens: int = 128     # pp{P}
    gen_tokens: int = 64         # tg{G}
    runs: int = 3
    warmup: int = 1
    threads: int | None = None
    device: str = "cpu"
    batch: int = 32              # classifier throughput batch
    seq: int = 128               # classifier sequence length
    quality_texts: int = 8       # held-out texts for perplexity / KL / top-1 (decoders) or agreement (classifiers)
    latency_runs: int = 50       # classifier batch-1 latency samples

    def __post_init__(self):
        for name, least in LEAST.items():
            value = getattr(self, name)
            if value is None and name == "threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise BenchError(f"BenchConfig {name} = {value!r}: expected a whole number of at least {least}"
                                 f"{' (or None: the backend chooses)' if name == 'threads' else ''}")
        if self.device not in DEVICES:
            raise BenchError(f"BenchConfig device = {self.device!r}: expected one of {', '.join(DEVICES)}")


# the smallest value of each count that still measures something (no runs: a table of nan)
LEAST = {"prompt_tokens": 1, "gen_tokens": 1, "runs": 1, "warmup": 0, "threads": 1, "batch": 1, "seq": 1,
         "quality_texts": 1, "latency_runs": 1}
WORKER_FAILED = 3   # the worker's exit status when the runtime refused the artifact (its reason on stdout)


def weight_bytes(path: Path) -> int:
    """Bytes of model weights in an artifact (what a decoder reads per generated token, roughly), as the
    artifact's format declares its weight files."""
    from roots_edge.runtimes import RuntimeLoadError, backends, detect_format, facts

    try:
        return facts(detect_format(path)).weight_bytes(Path(path))
    except RuntimeLoadError:            # a row that failed: whatever weight files of any format are there
        return max(cls.facts.weight_bytes(Path(path)) for cls in backends().values())


def parameter_count(path: Path) -> int | None:
    """Weights of the model in an artifact or model folder (tied tensors once), from what is on disk: the
    manifest's count (exports since manifest schema 4), a GGUF header's tensor shapes, or safetensors headers;
    None for an ONNX / OpenVINO folder without one. (Dividing the manifest's size of all files by its bits per
    weight, which counts weight files only, overcounted: tokenizer and graph files are not weights.)"""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    manifest = Manifest.read(folder) if p.is_dir() else None
    if manifest is not None and manifest.parameters:
        return manifest.parameters
    ggufs = [p] if p.suffix == ".gguf" else sorted(p.glob("*.gguf")) if p.is_dir() else []
    if len(ggufs) == 1:
        from roots_edge.formats.gguf import read_header

        return read_header(ggufs[0])["elements"] or None
    shards = sorted(folder.glob("*.safetensors")) if p.is_dir() else []
    if shards:
        from roots_edge.data.folder import verify_safetensors

        count = 0
        for shard in shards:
            for name, entry in verify_safetensors(shard).items():
                if name != "__metadata__":
                    count += int(np.prod(entry["shape"], dtype=np.int64))
        return count or None
    return None


# ------------------------------------------------------------------------------------------ machine load
BUSY_WARN = 0.10     # others' share of all cores above which a row's figures are flagged as untrustworthy


def cpu_busy_seconds() -> float | None:
    """CPU-seconds all processes have spent busy on every core so far (steal time counts: a neighbour VM took
    it), or None where it cannot be read."""
    try:
        import psutil

        t = psutil.cpu_times()._asdict()
    except ImportError:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        hz = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq + steal) / hz
    not_busy = ("idle", "iowait", "guest", "guest_nice")   # guest time is already inside user on Linux
    return sum(v for k, v in t.items() if k not in not_busy)


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def others_share(busy0: float | None, busy1: float | None, ours: float, wall: float) -> float | None:
    """The share of all cores (0..1) that other processes kept busy over a window of `wall` seconds, given the
    machine's busy CPU-seconds at both ends and the CPU-seconds our own processes used in between."""
    if busy0 is None or busy1 is None or wall <= 0:
        return None
    cores = os.cpu_count() or 1
    return round(min(1.0, max(0.0, (busy1 - busy0 - ours) / (wall * cores))), 3)


def idle_load(seconds: float = 1.0) -> float | None:
    """Others' share of the machine while this process only waits (before a row)."""
    busy0, own0, t0 = cpu_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    return others_share(busy0, cpu_busy_seconds(), own_cpu_seconds() - own0, time.perf_counter() - t0)


def prompt_ids(encode, texts: list[str], n: int) -> list[list[int]]:
    """The token ids every decoder row is measured on: each text's first `n` tokens under `encode` (text -> ids),
    texts of fewer than 9 tokens left out."""
    ids = [list(encode(t))[:n] for t in texts]
    return [i for i in ids if len(i) > 8]


def worker_failure(proc: subprocess.CompletedProcess) -> dict:
    """{"error": one line, "error_class"} of a worker that ended without measuring: the runtime's own message
    when it refused the artifact, else what the crash left (a signal, the traceback's last line) and its log."""
    if proc.returncode == WORKER_FAILED:
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            pass
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode < 0:
        import signal

        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else \
            str(-proc.returncode)
        reason = f"the worker process was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "") + \
            (f"; its last words: {lines[-1][:300]}" if lines else "")
    else:
        reason = f"the worker process crashed: {lines[-1][:300] if lines else f'exit status {proc.returncode}'}"
    return {"error": reason, "error_class": "crash", "log": proc.stderr[-4000:]}


def run_worker(path: Path, kind: str, cfg: BenchConfig, ids: list[list[int]] | None, texts: list[str]) -> dict:
    """Measure one artifact in a fresh process; logits / probabilities come back in an .npz. Also measures how
    busy the rest of the machine was, just before and during the run (`machine_load`). A worker that could not
    measure returns `worker_failure`'s {"error", "error_class"} instead. `ids` None: the worker tokenizes `texts`
    with the artifact's own tokenizer and returns them as "ids"."""
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"path": str(path), "kind": kind, "cfg": asdict(cfg), "ids": ids, "texts": texts,
                                   "out": str(Path(tmp) / "out.npz")}))
        before = idle_load()
        busy0, own0, t0 = cpu_busy_seconds(), own_cpu_seconds(), time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "roots_edge.runtimes.bench.worker", str(job)],
                              capture_output=True, text=True)
        wall, busy1 = time.perf_counter() - t0, cpu_busy_seconds()
        if proc.returncode != 0:
            return worker_failure(proc)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        arrays = dict(np.load(Path(tmp) / "out.npz"))
    ours = own_cpu_seconds() - own0 + result.pop("cpu_seconds", 0.0)
    result["machine_load"] = {"before": before, "during": others_share(busy0, busy1, ours, wall)}
    result["_arrays"] = arrays
    return result


def decoder_quality(logits: list[np.ndarray], ref: list[np.ndarray] | None, ids: list[list[int]]) -> dict:
    drift = LogitDrift()
    for i, lg in enumerate(logits):
        drift.add(ids[i], lg, None if ref is None else ref[i])
    out = {"perplexity": drift.perplexity, "quality_tokens": drift.positions}
    if ref is not None:
        out.update(kl=drift.kl, top1=drift.top1)
    return out


def classifier_quality(probs: np.ndarray, ref: np.ndarray | None, labels: list[str], truth: list[str] | None) -> dict:
    out = {}
    if ref is not None:
        out["agreement"] = float((probs.argmax(-1) == ref.argmax(-1)).mean())
    if truth is not None:
        from roots_edge.core.metrics import classification_report

        rep = classification_report(truth, [labels[i] for i in probs.argmax(-1)], labels)
        out.update(accuracy=rep.accuracy, macro_f1=rep.macro_f1)
    return out


def bench(paths: list[Path], cfg: BenchConfig, reference: Path | None = None, texts: list[str] | None = None,
          truth: list[str] | None = None, progress: bool = True) -> dict:
    """Benchmark artifacts (and the reference as one more row); returns {"kind", "machine", "config", "rows",
    "warnings"}. A path that does not exist is refused before anything runs; an artifact that cannot be measured
    (it does not load, its device is absent, the run does not fit its context, its worker crashed) gives a row
    with its one-line reason in "error" (and "error_class"), and the other rows are still measured."""
    from tqdm.auto import tqdm

    from roots_edge.runtimes import check_exists
    from roots_edge.runtimes.machine import describe

    jobs = ([(Path(reference), True)] if reference else []) + [(Path(p), False) for p in paths]
    if not jobs:
        raise BenchError("nothing to benchmark: give at least one artifact (or a reference model)")
    for path, _ in jobs:
        check_exists(path)
    kinds, failed = {}, {}
    for path, _ in jobs:
        try:
            kinds[path] = _kind(path)
        except RootsEdgeError as exc:      # a corrupt manifest, say: that row fails, the others run
            failed[path] = {"error": str(exc), "error_class": type(exc).__name__}
    kind = next(iter(kinds.values()), "decoder")
    if texts is None:
        from roots_edge.data.corpora import stdlib_docstrings

        texts = stdlib_docstrings().val
    if truth is not None and len(truth) != len(texts):
        raise BenchError(f"got {len(texts)} texts but {len(truth)} labels; give one label per text")
    # keep labels aligned with their texts through the filtering and the slicing
    pairs = [(t, y) for t, y in zip(texts, truth or [None] * len(texts)) if t.strip()]
    pairs = pairs[-cfg.quality_texts * (4 if kind == "classifier" else 1):]
    texts = [t for t, _ in pairs]
    truth = [y for _, y in pairs] if truth is not None else None
    ids: list[list[int]] | None = []
    if kind == "decoder":
        tok = _shared_tokenizer([p for p, _ in jobs if p not in failed])
        ids = prompt_ids(lambda t: tok.encode(t).ids, texts, cfg.prompt_tokens) if tok is not None else None
    rows, ref_arrays, params = [], None, None       # one parameter count for every row: comparable bits/weight
    for path, is_ref in tqdm(jobs, desc="bench", disable=not progress, unit="artifact"):
        res = failed.get(path) or run_worker(path, kind, cfg, ids, texts)
        if "error" in res:
            rows.append(_failed_row(path, is_ref, res))
            continue
        arrays, own_ids = res.pop("_arrays"), res.pop("ids", None)
        if ids is None:                  # no tokenizer.json anywhere: this row's own tokenizer chose the ids
            ids = own_ids
        res.update(artifact=str(path), reference=is_ref, format=_format(path), size_bytes=weight_bytes(path))
        params = params or parameter_count(path)
        res["bits_per_weight"] = round(8 * res["size_bytes"] / params, 3) if params else None
        if kind == "decoder":
            logits = [arrays[f"logits{i}"] for i in range(len(ids))]
            if is_ref:
                ref_arrays = logits
            res.update(decoder_quality(logits, None if is_ref else ref_arrays, ids))
        else:
            probs = arrays["probs"]
            if is_ref:
                ref_arrays = probs
            res.update(classifier_quality(probs, None if is_ref else ref_arrays, res["labels"], truth))
        rows.append(res)
    machine = describe(cfg.threads)
    bw = machine["memory_bandwidth_gbs"] * 1e9
    for r in rows:
        if kind == "decoder" and r.get("tg_tps"):
            # 4 significant digits: a small model can use well under 0.01% of the bandwidth, not 0
            r["bandwidth_use"] = float(f"{r['size_bytes'] * r['tg_tps'] / bw:.4g}")
    warnings = [f"{Path(r['artifact']).name}: other processes kept {100 * share:.0f}% of the machine's CPU busy "
                f"{when} this row; its figures cannot be trusted, run it again on a quiet machine"
                for r in rows for when, share in (("just before", (r.get("machine_load") or {}).get("before")),
                                                  ("during", (r.get("machine_load") or {}).get("during")))
                if share is not None and share > BUSY_WARN]
    return {"kind": kind, "machine": machine, "config": asdict(cfg), "rows": rows, "warnings": warnings}


def _format(path: Path) -> str | None:
    from roots_edge.runtimes import detect_format

    try:
        return detect_format(path)
    except RootsEdgeError:
        return None


def _failed_row(path: Path, is_ref: bool, failure: dict) -> dict:
    """A row that was not measured: what is known without the runtime, and why (one line)."""
    return {"artifact": str(path), "reference": is_ref, "format": _format(path), "size_bytes": weight_bytes(path),
            **failure, "error": " ".join(failure["error"].split())}


def source_reference(paths: list[Path]) -> Path | None:
    """The model folder the first artifact with a manifest was exported from, when that folder is on this machine:
    the default reference row. An unreadable manifest is skipped here (that artifact's own row says why)."""
    for p in map(Path, paths):
        try:
            manifest = Manifest.read(p) if p.is_dir() else None
        except RootsEdgeError:
            continue
        if manifest is not None and manifest.source.path and (Path(manifest.source.path) / "config.json").is_file():
            return Path(manifest.source.path)
    return None


def _kind(path: Path) -> str:
    """decoder or classifier, from the manifest's task, else (a model folder, a foreign export) from its
    config.json by the one architecture table (`roots_edge.core.spec`)."""
    folder = path if path.is_dir() else path.parent
    manifest = Manifest.read(folder)
    task = manifest.source.task if manifest is not None else ""
    if not task:
        from roots_edge.core.errors import NotAModelError, UnsupportedModelError
        from roots_edge.core.spec import read_spec

        try:
            task = read_spec(folder).task
        except (NotAModelError, UnsupportedModelError):
            task = "causal-lm"   # a bare GGUF file, say: its backend says what it is when it loads
    return "decoder" if task == "causal-lm" else "classifier"


def _shared_tokenizer(paths: list[Path]):
    """The tokenizer every decoder row is fed by, so that their quality figures compare: the first readable
    `tokenizer.json` of the reference, then of each artifact (beside it, or in the model its manifest names).
    None when none has one (bare GGUF files): the first row measured then tokenizes with its own tokenizer."""
    from roots_edge.runtimes.base import load_tokenizer

    for p in paths:
        folder = p if p.is_dir() else p.parent
        try:
            manifest = Manifest.read(folder)
            for candidate in (folder, Path(manifest.source.path) if manifest and manifest.source.path else None):
                if candidate is not None and (candidate / "tokenizer.json").is_file():
                    return load_tokenizer(candidate)
        except RootsEdgeError:           # a damaged tokenizer or manifest: that row fails on its own
            continue
    return None
