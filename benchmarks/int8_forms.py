"""onnx-int8 before and after the saturation fix (issue 8), side by side on this machine.

    .venv/bin/python benchmarks/int8_forms.py [--model FOLDER] [--classifier] [--threads 2] [--out DIR]

Decoder (the embedded default model, or `--model` any Llama folder, e.g. a real community model):
  onnx-int8 (before)  `quantize_dynamic`, per-channel QInt8: u8 activations x s8 weights through MatMulInteger,
                      one activation scale per tensor. What onnx-int8 was until this change.
  onnx-int8 (now)     8-bit MatMulNBits blocks of 32, activations quantized per block in the kernel.
  onnx-fp32, gguf-q8  for scale: the float graph and llama.cpp's Q8_0, the int8 peer.
Classifier (`--classifier`, the suite's MiniLM sentiment model): dynamic int8 with 8-bit weights (before) and
with 7-bit weights (now).

Each row is one subprocess of `roots_edge.runtimes.bench.bench` (the `roots-edge bench` harness), PyTorch
eager as the reference row; quality is measured against it. The machine line names the CPU, its flags and
its int8 kernel class. roots-edge opens every ONNX file with `session.x64quantprecision=1`: on an x86 CPU
without VNNI the "before" rows run on ONNX Runtime's u8 x u8 fallback (right, slower), not the saturating
u8 x s8 kernel a plain ONNX Runtime session uses there.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BEFORE = "onnx-int8-before"


def legacy_int8(model: Path, fp32: Path, out: Path) -> Path:
    """The pre-fix onnx-int8 form of `model`: its traced float graph through `quantize_dynamic` (per-channel
    QInt8, every MatMul and Gather), beside the support files of its `fp32` artifact, in a folder roots-edge
    loads. (The old exporter also read a tied embedding from the head's int8 weight; that saved bytes, not time.)"""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from roots_edge.exporters import load_source
    from roots_edge.exporters.onnx_decoder import export_decoder
    from roots_edge.exporters.onnx_encoder import export_encoder

    source = load_source(model)
    trace = export_decoder if source.spec.task == "causal-lm" else export_encoder
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(fp32, out)
    with tempfile.TemporaryDirectory() as tmp:
        trace(source.model, source.spec, Path(tmp) / "fp32.onnx", 21)
        logging.disable(logging.INFO)  # the quantizer logs a line per tensor on the root logger
        try:
            quantize_dynamic(Path(tmp) / "fp32.onnx", out / "model.onnx", per_channel=True,
                             weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
    manifest = json.loads((fp32 / "manifest.json").read_text())
    manifest.update(target=BEFORE, precision="int8", files=[],
                    quantization={"method": "dynamic", "weights": "QInt8", "per_channel": True})
    manifest["verification"] = {"passed": None, "skipped": "built by benchmarks/int8_forms.py"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def table(result: dict, names: dict[Path, str], kind: str) -> str:
    rows = [r for r in result["rows"] if not r["reference"]]
    before = next((r for r in rows if names[Path(r["artifact"])] == BEFORE), None)
    if kind == "decoder":
        head = ("| artifact | MB | pp t/s | tg t/s | pp × before | tg × before | peak RSS MB | KL vs PyTorch | top-1 |\n"
                "|---|---|---|---|---|---|---|---|---|")
        lines = [head]
        pp = f"pp{result['config']['prompt_tokens']}"
        for r in rows:
            r["pp_tps"] = r[pp][0]
        for r in rows:
            ratio = (lambda k: f"{r[k] / before[k]:.2f}") if before else (lambda k: "-")
            lines.append(f"| {names[Path(r['artifact'])]} | {r['size_bytes'] / 1e6:.1f} | {r['pp_tps']:.1f} | "
                         f"{r['tg_tps']:.1f} | {ratio('pp_tps')} | {ratio('tg_tps')} | {r['peak_rss_mb']:.0f} | "
                         f"{r['kl']:.2e} | {r['top1']:.4f} |")
        return "\n".join(lines)
    head = ("| artifact | MB | p50 ms | p50 × before | b32 texts/s | b32 × before | agreement |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        p50 = r["latency_ms_p50"]
        lines.append(f"| {names[Path(r['artifact'])]} | {r['size_bytes'] / 1e6:.1f} | {p50:.2f} | "
                     f"{before['latency_ms_p50'] / p50:.2f} | {r['throughput']:.1f} | "
                     f"{r['throughput'] / before['throughput']:.2f} | {r['agreement']:.4f} |")
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    from roots_edge.runtimes.machine import INT8_KERNELS, int8_kernel_class

    cpu = machine["cpu"]
    kernels = int8_kernel_class(cpu)
    return (f"machine: {cpu['model']} ({cpu['arch']}; {', '.join(cpu['flags'])}), {cpu['usable_cores']} cores, "
            f"threads {machine['threads']}; int8 kernels: {kernels} ({INT8_KERNELS[kernels]}); "
            f"onnxruntime {machine['versions'].get('onnxruntime')}")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a Llama model folder (default: the embedded default model)")
    ap.add_argument("--classifier", action="store_true", help="also the MiniLM sentiment classifier")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from suite import bench_home, build, classifier_model, quiet_libraries

    from roots_edge.train.pretrain import ensure_default_model
    from roots_edge.runtimes.bench import BenchConfig, bench
    from roots_edge.runtimes.bench.report import measured

    quiet_libraries()
    model = args.model or ensure_default_model()
    root = bench_home() / "int8-forms" / Path(model).name
    failed: dict[str, str] = {}
    paths = build(model, ("onnx-fp32", "onnx-int8", "gguf-q8"), root, "exports", failed)
    paths = {BEFORE: legacy_int8(model, paths["onnx-fp32"], root / BEFORE), **paths}
    cfg = BenchConfig(runs=args.runs, threads=args.threads, quality_texts=8)
    result = measured(bench(list(paths.values()), cfg, reference=Path(model)))
    names = {p: n for n, p in paths.items()}
    report = ["# onnx-int8 before and after the saturation fix\n", machine_line(result["machine"]), "",
              f"## Decoder: {Path(model).name}, pp{cfg.prompt_tokens} / tg{cfg.gen_tokens}, {args.runs} runs", "",
              table(result, names, "decoder")]
    if args.classifier:
        clf = classifier_model()
        croot = bench_home() / "int8-forms" / "minilm-sentiment"
        cpaths = build(clf, ("onnx-fp32", "onnx-int8"), croot, "classifier exports", failed)
        cpaths = {BEFORE: legacy_int8(clf, cpaths["onnx-fp32"], croot / BEFORE), "onnx-int8": cpaths["onnx-int8"]}
        from sentiment_data import heldout_set

        texts, truth = heldout_set()
        cres = measured(bench(list(cpaths.values()), BenchConfig(threads=args.threads, runs=args.runs), reference=clf,
                              texts=texts, truth=truth))
        cnames = {p: n for n, p in cpaths.items()}
        report += ["", f"## Classifier: MiniLM sentiment, batch 1 / seq {cfg.seq}", "", table(cres, cnames, "classifier")]
    if failed:
        report += ["", "Failed exports: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
    text = "\n".join(report) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"int8_forms-{Path(model).name}.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
