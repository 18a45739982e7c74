"""Data-free against data-aware quantization, side by side: bits/weight, mean KL, top-1 and perplexity change
against PyTorch for each low-bit target, on the same model and the same held-out text.

    .venv/bin/python benchmarks/quant_quality.py [--models default,smollm2,gemma3] [--targets ...] [-o FILE.md]

`default` is the embedded default model (its validation text calibrates and verifies); `smollm2` and `gemma3`
are the imported real models of `real_model_exports.py` (run `make real-models` first; their calibration and
verification text is the standard library's docstrings). Each target is exported once per method with
`--allow-drift`; the last column is KL(data-aware) / KL(data-free) of the same target.

Methods compared per format:
    gguf       rtn (llama.cpp's quantizer as is)        vs  imatrix (importance matrix from PyTorch activations)
    openvino   rtn (NNCF data-free)                     vs  awq+scale-estimation (NNCF, on calibration text)
    onnx       rtn (MatMulNBits round-to-nearest)       vs  gptq (PyTorch GPTQ written into MatMulNBits blocks)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = ("gguf-q4", "gguf-Q4_0", "gguf-IQ4_XS", "gguf-Q3_K_M", "gguf-Q2_K", "onnx-int4", "openvino-int4")
METHODS = {"gguf": ("rtn", "imatrix"), "openvino": ("rtn", "awq+scale-estimation"), "onnx": ("rtn", "gptq")}


def model_folder(name: str) -> Path | None:
    from roots_edge.core.paths import home

    if name == "default":
        return None
    folder = home() / "real-models" / f"imported-{name}"
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{folder} is missing: run `make real-models` (benchmarks/real_model_exports.py) first")
    return folder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)

    import shutil
    import tempfile

    from roots_edge.exporters import configure, export, load_source
    from roots_edge.runtimes.machine import cpu_info

    cpu = cpu_info()
    lines = [f"CPU: {cpu['model']} ({cpu['usable_cores']} cores; {' '.join(sorted(cpu['flags']))})", "",
             "| model | target | method | bits/w | mean KL | top-1 | ppl change | KL aware / free | export s |",
             "|---|---|---|---|---|---|---|---|---|"]
    work = Path(tempfile.mkdtemp(prefix="quant-quality-"))
    try:
        for model in args.models.split(","):
            source = load_source(model_folder(model))
            for target_name in args.targets.split(","):
                fmt = target_name.split("-")[0]
                kls = []
                for method in METHODS[fmt]:
                    target, options = configure(target_name, spec=source.spec, method=method, allow_drift=True,
                                                threads=args.threads)
                    t0 = time.perf_counter()
                    m = export(source, target, work / f"{model}-{target_name}-{method}", options,
                               log=lambda *_: None)
                    seconds = time.perf_counter() - t0
                    met = m["verification"]["metrics"]
                    kls.append(met["kl"])
                    ppl = 100 * (met["perplexity"] / met["perplexity_ref"] - 1)
                    ratio = f"{kls[1] / kls[0]:.2f}" if len(kls) == 2 else ""
                    row = (f"| {model} | {m['target']} | {method} | {m['bits_per_weight']:.2f} | {met['kl']:.4f} | "
                           f"{met['top1']:.3f} | {ppl:+.2f}% | {ratio} | {seconds:.0f} |")
                    lines.append(row)
                    print(row, file=sys.stderr, flush=True)
                    shutil.rmtree(work / f"{model}-{target_name}-{method}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output:     # the command that made it heads the file
        Path(args.output).write_text(f"`{' '.join(['benchmarks/quant_quality.py', *(argv or sys.argv[1:])])}`\n\n"
                                     + report)


if __name__ == "__main__":
    main()
