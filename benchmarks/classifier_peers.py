"""The MiniLM sentiment classifier at batch 1 / 128 tokens: PyTorch eager, our int8 exports (ONNX Runtime and
OpenVINO), and optimum-onnx's own export and int8 quantization of the same weights, in one `roots-edge bench` run.

    .venv/bin/python benchmarks/classifier_peers.py [--threads 2] [--latency-runs 200]

optimum runs in its own venv (`make .venv-optimum/.installed`; it pins an older transformers): `optimum-cli export
onnx --task text-classification`, then `optimum-cli onnxruntime quantize` with the preset for this CPU
(`--avx512_vnni` where the CPU has VNNI, else `--avx2`), `--per_channel`. Its folders load in our runtime as they
are. Writes results/classifier_peers.{md,json} with issue 15's classifier goal: int8 p50 >= 3x PyTorch eager and
p99 <= 1.5x p50, in ONNX Runtime and in OpenVINO.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OURS = ("onnx-fp32", "onnx-int8", "openvino-int8")
SPEEDUP_GOAL, TAIL_GOAL = 3.0, 1.5


def optimum_cli() -> Path | None:
    cli = Path(os.environ.get("ROOTS_EDGE_OPTIMUM_CLI") or HERE.parent / ".venv-optimum" / "bin" / "optimum-cli")
    return cli if cli.is_file() else None


def optimum_exports(cli: Path, model: Path, root: Path, vnni: bool) -> dict[str, Path]:
    """optimum's fp32 export and its int8 quantization of `model`, cached under `root`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    fp32, int8 = root / "optimum-fp32", root / "optimum-int8"
    steps = [(fp32, [str(cli), "export", "onnx", "--model", str(model), "--task", "text-classification", str(fp32)]),
             (int8, [str(cli), "onnxruntime", "quantize", "--onnx_model", str(fp32),
                     "--avx512_vnni" if vnni else "--avx2", "--per_channel", "-o", str(int8)])]
    for out, cmd in steps:
        if not any(out.glob("*.onnx")):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode:
                sys.exit(f"optimum failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return {"optimum-fp32": fp32, "optimum-int8": int8}


def goals(result: dict) -> list[tuple[str, str, str]]:
    rows = result["rows"]
    ref = next(r for r in rows if r["reference"])
    out = []
    for r in rows:
        name = Path(r["artifact"]).name
        if r["reference"] or "int8" not in name:
            continue
        speedup = ref["latency_ms_p50"] / r["latency_ms_p50"]
        tail = r["latency_ms_p99"] / r["latency_ms_p50"]
        out.append((f"{name}: p50 >= {SPEEDUP_GOAL:g}x PyTorch eager, p99 <= {TAIL_GOAL:g}x p50",
                    f"{speedup:.2f}x, p99/p50 {tail:.2f}",
                    "yes" if speedup >= SPEEDUP_GOAL and tail <= TAIL_GOAL else "**no**"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-runs", type=int, default=200)
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results" / "classifier_peers")
    args = ap.parse_args(argv)

    from sentiment_data import heldout_set
    from suite import bench_home, build, classifier_model

    from roots_edge.runtimes.bench.harness import BenchConfig, bench
    from roots_edge.runtimes.bench.report import measured, to_json, to_markdown
    from roots_edge.runtimes.machine import cpu_info

    model = classifier_model()
    root = bench_home() / "minilm-sentiment"
    failed: dict[str, str] = {}
    paths = build(model, OURS, root, "classifier artifacts", failed)
    if failed:
        sys.exit(f"exports failed: {failed}")
    cli = optimum_cli()
    peers = optimum_exports(cli, model, root, "AVX512-VNNI" in cpu_info()["flags"]) if cli else {}
    if not cli:
        print("optimum-cli not found (make .venv-optimum/.installed): its rows are left out", file=sys.stderr)
    texts, labels = heldout_set()
    cfg = BenchConfig(threads=args.threads, device="cpu", latency_runs=args.latency_runs)
    result = measured(bench([*paths.values(), *peers.values()], cfg, reference=model, texts=texts, truth=labels))
    result["goals"] = goals(result)
    table = "\n".join(["Command: python benchmarks/classifier_peers.py "
                       f"--threads {args.threads} --latency-runs {args.latency_runs}", "", to_markdown(result), "",
                       "| goal (issue 15) | measured | reached |", "|---|---|---|",
                       *(f"| {g} | {m} | {r} |" for g, m, r in result["goals"])])
    Path(f"{args.output}.md").write_text(table + "\n")
    Path(f"{args.output}.json").write_text(to_json(result))
    print(table)


if __name__ == "__main__":
    main()
