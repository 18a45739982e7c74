"""One artifact's measurements, in a process of its own: `python -m roots_edge.runtimes.bench.worker JOB.json`.

Prints one JSON line; logits (decoders) or class probabilities (classifiers) go to the job's .npz.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np


def _stats(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def bench_decoder(model, job: dict, cfg) -> tuple[dict, dict]:
    from roots_edge.core.errors import BenchError

    need, context = cfg.prompt_tokens + cfg.gen_tokens, model.backend.context_length
    if need > context:  # past it a model runs on positions it never learned (or the runtime fails midway)
        raise BenchError(f"pp{cfg.prompt_tokens} + tg{cfg.gen_tokens} = {need} tokens do not fit the context of "
                         f"{job['path']} ({context} tokens); lower --prompt-tokens / --gen-tokens")
    arrays = {f"logits{i}": model.logits(ids) for i, ids in enumerate(job["ids"])}
    stream = [t for ids in job["ids"] for t in ids]
    while len(stream) < cfg.prompt_tokens:
        stream += stream or [0]
    prompt = np.asarray(stream[: cfg.prompt_tokens], dtype=np.int64)
    backend = model.backend
    pp, tg, ttft, tpot = [], [], [], []
    for run in range(cfg.warmup + cfg.runs):
        backend.reset()
        t0 = time.perf_counter()
        logits = backend.forward(prompt)
        token = int(np.argmax(logits))
        t1 = time.perf_counter()
        steps = []
        for _ in range(cfg.gen_tokens):
            s = time.perf_counter()
            logits = backend.forward(np.asarray([token], dtype=np.int64))
            token = int(np.argmax(logits))
            steps.append(time.perf_counter() - s)
        if run >= cfg.warmup:
            pp.append(cfg.prompt_tokens / (t1 - t0))
            tg.append(cfg.gen_tokens / sum(steps))
            ttft.append((t1 - t0) * 1e3)
            tpot.append(float(np.mean(steps)) * 1e3)
    pp_m, pp_sd = _stats(pp)
    tg_m, tg_sd = _stats(tg)
    return {f"pp{cfg.prompt_tokens}": [round(pp_m, 2), round(pp_sd, 2)],
            f"tg{cfg.gen_tokens}": [round(tg_m, 2), round(tg_sd, 2)],
            "tg_tps": round(tg_m, 2), "ttft_ms": round(_stats(ttft)[0], 2), "tpot_ms": round(_stats(tpot)[0], 3)}, arrays


def text_of_tokens(tokenize, texts: list[str], n: int) -> str:
    """Whole words of `texts` making at most `n` tokens (special tokens included) under `tokenize`."""
    words = " ".join(texts).split()
    text = " ".join(words[: n])
    while len(tokenize(text)) > n and " " in text:
        text = text.rsplit(" ", 1)[0]
    return text


def bench_classifier(model, job: dict, cfg) -> tuple[dict, dict]:
    texts = job["texts"]
    preds = model.classify(texts)
    labels = list(preds[0]["scores"])
    arrays = {"probs": np.array([[p["scores"][lab] for lab in labels] for p in preds])}
    one = text_of_tokens(model.tokenize, texts, cfg.seq)
    batch = [one] * cfg.batch
    for _ in range(cfg.warmup * 3):
        model.classify(one)
    lat = []
    for _ in range(cfg.latency_runs):
        t = time.perf_counter()
        model.classify(one)
        lat.append((time.perf_counter() - t) * 1e3)
    model.classify(batch)
    thr = []
    for _ in range(cfg.runs):
        t = time.perf_counter()
        model.classify(batch)
        thr.append(cfg.batch / (time.perf_counter() - t))
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    m, sd = _stats(thr)
    return {"labels": labels, "seq_tokens": len(model.tokenize(one)), "latency_ms_p50": round(float(p50), 3),
            "latency_ms_p90": round(float(p90), 3), "latency_ms_p99": round(float(p99), 3),
            f"throughput_b{cfg.batch}": [round(m, 2), round(sd, 2)], "throughput": round(m, 2)}, arrays


def peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to this executable's own address space;
    ru_maxrss can carry the parent's peak across fork + exec on Linux."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1 << 20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(job_path: str) -> None:
    from roots_edge.core.errors import RootsEdgeError

    from roots_edge.runtimes import load
    from roots_edge.runtimes.bench.harness import WORKER_FAILED, BenchConfig, prompt_ids

    job = json.loads(open(job_path).read())
    cfg = BenchConfig(**job["cfg"])
    try:   # the runtime refusing the artifact (damaged, device absent, run past its context) is this row's result
        t = time.perf_counter()
        model = load(job["path"], device=cfg.device, threads=cfg.threads)
        load_s = time.perf_counter() - t
        own_ids = job["kind"] == "decoder" and job["ids"] is None   # no shared tokenizer.json: the artifact's own
        if own_ids:
            job["ids"] = prompt_ids(model.tokenize, job["texts"], cfg.prompt_tokens)
        measure = bench_decoder if job["kind"] == "decoder" else bench_classifier
        result, arrays = measure(model, job, cfg)
    except RootsEdgeError as exc:
        print(json.dumps({"error": str(exc), "error_class": type(exc).__name__}))
        sys.exit(WORKER_FAILED)
    if own_ids:                 # the ids every later row is measured on
        result["ids"] = job["ids"]
    info = model.info()
    result.update(load_s=round(load_s, 3), precision=info.get("precision"), backend=info.get("backend"),
                  device=info.get("device"), peak_rss_mb=round(peak_rss_mb(), 1))
    np.savez(job["out"], **arrays)
    # what this run used: the harness subtracts it from the machine's busy time, the rest is other processes
    times = os.times()
    result["cpu_seconds"] = times.user + times.system + times.children_user + times.children_system
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
