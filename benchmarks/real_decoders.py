"""Real-model decoder table: one `roots-edge bench` run of a real community model's exports (every format at 8
and 4 bits) next to PyTorch eager on the same weights, and issue 15's goals marked with the measured ratios.

    .venv/bin/python benchmarks/real_decoders.py --model smollm2 [--targets gguf-q8,...] [--runs 3]

The exports come from `benchmarks/real_model_exports.py` (cached under $ROOTS_EDGE_HOME/real-models/exports);
the reference is the imported PyTorch folder they were made from. Writes results/real_decoders-<model>.{md,json,png}:
the bench table (pp / tg tokens/s, TTFT, peak RSS, bits per weight, share of the measured memory bandwidth,
quality against the reference) and the goals. Each artifact runs in a subprocess of its own, one after another.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("gguf-q8", "gguf-q4", "onnx-int8", "onnx-int4", "openvino-int8", "openvino-int4")
BANDWIDTH_GOAL, INT4_GOAL, PYTORCH_GOAL = 0.60, 0.70, 5.0


def goals(result: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, reached) rows for issue 15's decoder goals, from one bench result."""
    rows = result["rows"]
    ref = next((r for r in rows if r["reference"]), None)
    by = {Path(r["artifact"]).name: r for r in rows if not r["reference"]}
    out = []
    if ref:
        ratios = {name: r["tg_tps"] / ref["tg_tps"] for name, r in by.items()}
        reached = [n for n, x in ratios.items() if x >= PYTORCH_GOAL]
        out.append((f"every format >= {PYTORCH_GOAL:g}x PyTorch eager decode (tg)",
                    ", ".join(f"{n} {x:.2f}" for n, x in ratios.items()),
                    "yes" if len(reached) == len(ratios) else f"only {', '.join(reached)}" if reached else "**no**"))
    for name in ("gguf-q8", "gguf-q4"):
        if name in by:
            use = by[name]["bandwidth_use"]
            out.append((f"{name} ({by[name]['precision']}) decode >= {BANDWIDTH_GOAL:.0%} of the bandwidth limit",
                        f"{use:.1%}", "yes" if use >= BANDWIDTH_GOAL else "**no**"))
    if "gguf-q4" in by:
        q4 = by["gguf-q4"]
        for name in ("onnx-int4", "openvino-int4"):
            if name in by:
                ratio = by[name]["tg_tps"] / q4["tg_tps"]
                out.append((f"{name} decode >= {INT4_GOAL:g}x llama.cpp Q4_K_M (bits/w {by[name]['bits_per_weight']:.2f}"
                            f" vs {q4['bits_per_weight']:.2f})", f"{ratio:.2f}",
                            "yes" if ratio >= INT4_GOAL else "**no**"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="a model of real_model_exports.py (smollm2, gemma3)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("-o", "--output", type=Path, help="path prefix (default results/real_decoders-<model>)")
    args = ap.parse_args(argv)

    from roots_edge.core.paths import home
    from roots_edge.runtimes.bench.harness import BenchConfig, bench
    from roots_edge.runtimes.bench.report import measured, plot, to_json, to_markdown

    root = home() / "real-models"
    reference = root / f"imported-{args.model}"
    paths = [root / "exports" / args.model / t for t in args.targets.split(",")]
    missing = [str(p) for p in [reference, *paths] if not p.is_dir()]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; run benchmarks/real_model_exports.py --models {args.model} first")
    cfg = BenchConfig(prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, runs=args.runs,
                      threads=args.threads, device="cpu")
    result = measured(bench(paths, cfg, reference=reference))
    result["goals"] = goals(result)
    prefix = args.output or HERE / "results" / f"real_decoders-{args.model}"
    command = (f"python benchmarks/real_decoders.py --model {args.model} --targets {args.targets} --runs {args.runs} "
               f"--threads {args.threads} --prompt-tokens {args.prompt_tokens} --gen-tokens {args.gen_tokens}")
    table = "\n".join([f"Command: {command}", "", to_markdown(result), "",
                       "| goal (issue 15) | measured | reached |", "|---|---|---|",
                       *(f"| {g} | {m} | {r} |" for g, m, r in result["goals"])])
    Path(f"{prefix}.md").write_text(table + "\n")
    Path(f"{prefix}.json").write_text(to_json(result))
    plot(result, Path(f"{prefix}.png"))
    print(table)
    print(json.dumps({"written": [f"{prefix}.md", f"{prefix}.json", f"{prefix}.png"]}), file=sys.stderr)


if __name__ == "__main__":
    main()
