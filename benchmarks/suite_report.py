"""The suite's report: markdown tables with ratios against PyTorch eager and wrapper overhead, the targets
the issue set, and a PNG. Reads the dict `benchmarks/suite.py` builds (also saved as suite.json)."""
from __future__ import annotations

import json
from pathlib import Path

TARGETS = {"classifier_int8_speedup": 2.5, "decoder_q4_tg_speedup": 5.0, "wrapper_ratio": 1.05}


def _manifest(path: Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |"
                                                                                 for r in rows])


def _reference(result: dict) -> dict:
    return next(r for r in result["rows"] if r["reference"])


def decoder_table(dec: dict, generate: dict | None, plan: dict) -> str:
    pp, tg = f"pp{plan['prompt_tokens']}", f"tg{plan['gen_tokens']}"
    ref = next(r for r in dec["rows"] if r["reference"])
    head = ["engine", "precision", "size MB", "bits/w", f"{pp} t/s", f"{tg} t/s", "TTFT ms", "TPOT ms",
            f"{tg} × PyTorch", f"{pp} × PyTorch", "peak RSS MB", "ppl", "KL (manifest)", "top-1 (manifest)"]
    rows = [["PyTorch eager fp32, KV-cached loop (baseline)", "fp32", f"{ref['size_bytes'] / 1e6:.2f}", "32",
             f"{ref[pp][0]:.1f} ± {ref[pp][1]:.1f}", f"{ref[tg][0]:.1f} ± {ref[tg][1]:.1f}", f"{ref['ttft_ms']:.1f}",
             f"{ref['tpot_ms']:.2f}", "1.00", "1.00", f"{ref['peak_rss_mb']:.0f}", f"{ref['perplexity']:.2f}",
             "-", "-"]]
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


def classifier_table(clf: dict, plan: dict) -> str:
    b = f"throughput_b{plan['batch']}"
    ref = next(r for r in clf["rows"] if r["reference"])
    head = ["engine", "precision", "size MB", "seq tokens", "p50 ms", "p90 ms", "p99 ms", "p50 × PyTorch",
            f"b{plan['batch']} texts/s", f"b{plan['batch']} × PyTorch", "peak RSS MB", "agreement (manifest)",
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
            "overhead %", "ratio p25-p75", "rounds", "same output"]
    rows = []
    for res in results:
        work = "1 greedy token" if res["kind"] == "decoder" else "classify 1 text"
        for name, r in res["raw"].items():
            rows.append([res["backend"], res["target"], work, f"{res['median_ms']['wrapper']:.3f}", name,
                         f"{res['median_ms'][name]:.3f}", f"**{r['ratio']:.3f}**", f"{100 * (r['ratio'] - 1):+.1f}",
                         f"{r['paired_iqr'][0]:.3f}-{r['paired_iqr'][1]:.3f}", str(res["rounds"]),
                         "yes" if res["same_output"][name] else "NO"])
    return _table(head, rows)


def targets(dec: dict, clf: dict, overhead: list[dict]) -> list[dict]:
    """The issue's targets against what this run measured (None: the artifact is missing from this run)."""
    out = []

    def add(name: str, x: float | None, goal: float, at_least: bool) -> None:
        ok = x is not None and (x >= goal if at_least else x <= goal)
        out.append({"target": name, "measured": None if x is None else round(x, 3), "reached": ok,
                    "goal": f"≥ {goal}×" if at_least else f"≤ {goal}"})

    def rows(result: dict) -> tuple[dict, dict]:
        return (next(r for r in result["rows"] if r["reference"]),
                {_manifest(r["artifact"])["target"]: r for r in result["rows"] if not r["reference"]})
    cref, crows = rows(clf)
    for t in ("onnx-int8", "openvino-int8"):
        r = crows.get(t)
        add(f"classifier {t} p50 vs PyTorch eager fp32 (batch 1, seq {cref['seq_tokens']})",
            cref["latency_ms_p50"] / r["latency_ms_p50"] if r else None, TARGETS["classifier_int8_speedup"], True)
    dref, drows = rows(dec)
    r = drows.get("gguf-Q4_K_M")
    add("decoder gguf-q4 (Q4_K_M) tokens/s vs PyTorch eager fp32 (KV-cached loop)",
        r["tg_tps"] / dref["tg_tps"] if r else None, TARGETS["decoder_q4_tg_speedup"], True)
    for res in overhead:
        for name, r in res["raw"].items():
            add(f"wrapper / raw, {res['backend']} {res['kind']} ({name})", r["ratio"], TARGETS["wrapper_ratio"], False)
    return out


def machine_text(result: dict, loads: dict) -> str:
    from roots_edge.runtimes.bench.report import machine_line

    v = result["machine"]["versions"]
    busy = ", ".join(f"{k} {v_['cores_busy']} ({v_['niced']} niced)" for k, v_ in loads.items())
    return (f"{machine_line(result)}, transformers {v.get('transformers', '?')}, numpy {v.get('numpy', '?')}; "
            f"{result['machine']['os']}. Other processes' load before each phase (cores busy): {busy}")


def markdown(report: dict) -> str:
    plan = report["plan"]
    t = report["targets"]
    parts = [f"# roots-edge benchmark suite{' (--quick)' if plan['quick'] else ''}", "",
             f"machine: {report['machine_line']}", "",
             f"All rows: {plan['threads']} threads, CPU, one run of this script ({report['started']}). PyTorch eager "
             "baseline = the transformers model in fp32 driven by a KV-cached greedy loop (one `model(...)` call per "
             "token with a `DynamicCache`, as `roots_edge.runtimes.torch` does), measured by the same harness as "
             "every artifact (`roots-edge bench`: one subprocess each).", "",
             f"## Decoder: the default model (Llama, {_reference(report['decoder'])['size_bytes'] / 4e6:.1f}M "
             "parameters: its fp32 weights / 4 bytes), "
             f"pp{plan['prompt_tokens']} / tg{plan['gen_tokens']}",
             "", decoder_table(report["decoder"], report.get("pytorch_generate"), plan), "",
             "## Classifier: all-MiniLM-L6-v2 finetuned on the suite's sentiment sentences", "",
             classifier_table(report["classifier"], plan), "",
             f"## roots-edge wrapper against the raw library (up to {plan['overhead_rounds']} interleaved rounds)",
             "", f"Decoders: {plan['overhead_tokens']} greedy tokens via "
             "`EdgeModel.generate_ids(ids, N, ignore_eos=True)` vs a raw loop (wrapper / raw = median of per-round "
             "ratios); classifiers: `EdgeModel.classify(text)` vs tokenize + run + softmax on the same "
             f"{plan['seq']}-token text ({plan['classifier_calls']} calls per round).", "",
             overhead_table(report["overhead"]), "", "## Targets", "",
             _table(["target", "measured", "goal", "reached"],
                    [[x["target"], _fmt(x["measured"], ""), x["goal"], "yes" if x["reached"] else "**no**"]
                     for x in t])]
    if report.get("failed_exports"):
        parts += ["", "## Exports that failed (left out above)", ""]
        parts += [f"- `{name}`: {why}" for name, why in report["failed_exports"].items()]
    return "\n".join(parts) + "\n"


def _contender(res: dict, name: str) -> str:
    """"llamacpp decoder (llama_decode)", or "onnxruntime classifier" when a backend has one raw contender."""
    raw = name.removeprefix("raw").strip()
    return f"{res['backend']} {res['kind']}" + (f" ({raw})" if raw else "")


def plot(report: dict, out: Path) -> Path:
    """Three panels: decoder tg and classifier p50 speedups over PyTorch eager (log scale), wrapper / raw.
    Bars a target applies to are green (reached) or red (missed); the others blue; dashed line: the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    dec, clf = report["decoder"], report["classifier"]
    dref = next(r for r in dec["rows"] if r["reference"])
    cref = next(r for r in clf["rows"] if r["reference"])
    g = report["plan"]["gen_tokens"]
    panels = [  # (title, goal, speedup?, targeted names, [(name, value)])
        (f"decoder tg{g} t/s ÷ PyTorch eager (×); target: gguf Q4 ≥ {TARGETS['decoder_q4_tg_speedup']}×",
         TARGETS["decoder_q4_tg_speedup"], True, {"gguf-Q4_K_M"},
         [(_manifest(r["artifact"])["target"], r["tg_tps"] / dref["tg_tps"])
          for r in dec["rows"] if not r["reference"]]),
        (f"classifier p50 speedup over PyTorch eager (×); target: int8 ≥ {TARGETS['classifier_int8_speedup']}×",
         TARGETS["classifier_int8_speedup"], True, {"onnx-int8", "openvino-int8"},
         [(_manifest(r["artifact"])["target"], cref["latency_ms_p50"] / r["latency_ms_p50"])
          for r in clf["rows"] if not r["reference"]]),
        (f"roots-edge wrapper ÷ raw library time; target ≤ {TARGETS['wrapper_ratio']}",
         TARGETS["wrapper_ratio"], False, None,
         [(_contender(res, name), r["ratio"]) for res in report["overhead"] for name, r in res["raw"].items()])]
    fig, axes = plt.subplots(1, 3, figsize=(18, 0.45 * max(len(p[4]) for p in panels) + 2.5))
    for ax, (title, goal, speedup, targeted, bars) in zip(axes, panels):
        names, values = [b[0] for b in bars], [b[1] for b in bars]
        colors = ["#3b7dd8" if targeted is not None and n not in targeted else
                  "#4caf50" if (v >= goal if speedup else v <= goal) else "#d9534f" for n, v in bars]
        ax.barh(names, values, color=colors)
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
        ax.set_title(title, fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(report["machine_line"][:170], fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
