"""Tables (markdown, CSV, JSON) and a plot of `roots-edge bench` results."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from roots_edge.runtimes import backends


def _name(row: dict) -> str:
    return ("reference " if row["reference"] else "") + Path(row["artifact"]).name


def _pm(pair) -> str:
    return f"{pair[0]:.1f} ± {pair[1]:.1f}" if isinstance(pair, list) else "-"


def _load(row: dict) -> str:
    """Other processes' share of the machine just before / during the row, flagged when past the threshold."""
    from roots_edge.runtimes.bench.harness import BUSY_WARN

    load = row.get("machine_load") or {}
    shares = [load.get("before"), load.get("during")]
    text = " / ".join("-" if v is None else f"{100 * v:.0f}" for v in shares)
    return text + (" (busy!)" if any(v is not None and v > BUSY_WARN for v in shares) else "")


def failures(result: dict) -> list[str]:
    """`name: reason` of every row that was not measured."""
    return [f"{_name(r)}: {r['error']}" for r in result["rows"] if r.get("error")]


def measured(result: dict) -> dict:
    """`result` when every row was measured, else a BenchError naming each failed row and its reason: for
    scripts that read every row's figures (benchmarks/)."""
    from roots_edge.core.errors import BenchError

    failed = failures(result)
    if failed:
        raise BenchError(f"{len(failed)} of {len(result['rows'])} rows failed: " + "; ".join(failed))
    return result


def columns(result: dict) -> list[tuple[str, callable]]:
    """The table's columns: (header, cell of a row). A row that was not measured shows "-" in every figure
    and its reason in the last column, "error", which the table has only when some row failed."""
    cols = _columns(result)
    if any(r.get("error") for r in result["rows"]):
        cols.append(("error", lambda r: r.get("error") or "-"))
    return cols


def _columns(result: dict) -> list[tuple[str, callable]]:
    cfg = result["config"]
    f = lambda key, fmt: (lambda r: format(r[key], fmt) if r.get(key) is not None else "-")  # noqa: E731
    common = [("artifact", _name), ("format", f("format", "")), ("precision", f("precision", "")),
              ("size MB", lambda r: f"{r['size_bytes'] / 1e6:.2f}"), ("bits/w", f("bits_per_weight", ".2f")),
              ("load s", f("load_s", ".3f")), ("peak RSS MB", f("peak_rss_mb", ".0f")),
              ("others' CPU %", _load)]
    if result["kind"] == "decoder":
        pp, tg = f"pp{cfg['prompt_tokens']}", f"tg{cfg['gen_tokens']}"
        return common + [(f"{pp} t/s", lambda r: _pm(r.get(pp))), (f"{tg} t/s", lambda r: _pm(r.get(tg))),
                         ("TTFT ms", f("ttft_ms", ".1f")), ("TPOT ms", f("tpot_ms", ".2f")),
                         ("bandwidth %", lambda r: f"{100 * r['bandwidth_use']:.1f}" if "bandwidth_use" in r else "-"),
                         ("ppl", f("perplexity", ".2f")), ("KL", f("kl", ".2e")), ("top-1", f("top1", ".4f"))]
    b = cfg["batch"]
    return common + [("p50 ms", f("latency_ms_p50", ".2f")), ("p90 ms", f("latency_ms_p90", ".2f")),
                     ("p99 ms", f("latency_ms_p99", ".2f")),
                     (f"b{b} texts/s", lambda r: _pm(r.get(f"throughput_b{b}"))),
                     ("agreement", f("agreement", ".4f")), ("accuracy", f("accuracy", ".4f")),
                     ("macro-F1", f("macro_f1", ".4f"))]


def machine_line(result: dict) -> str:
    m = result["machine"]
    cpu = m["cpu"]
    v = m["versions"]
    keys = [cls.facts.version_key for cls in backends().values()]
    libs = ", ".join(f"{k} {v[k]}" for k in keys if k in v)
    return (f"{cpu['model']} ({cpu['arch']}; {', '.join(cpu['flags']) or 'no SIMD flags found'}), "
            f"{cpu['usable_cores']} cores, threads {m['threads'] or 'default'}, memory bandwidth "
            f"{m['memory_bandwidth_gbs']} GB/s; {libs}")


def to_markdown(result: dict) -> str:
    cols = columns(result)
    lines = [f"machine: {machine_line(result)}", "",
             "| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fn(r).replace("|", "\\|") for _, fn in cols) + " |" for r in result["rows"]]
    lines += [""] + [f"warning: {w}" for w in result.get("warnings", [])] if result.get("warnings") else []
    return "\n".join(lines)


def to_csv(result: dict) -> str:
    cols = columns(result)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([c for c, _ in cols])
    for r in result["rows"]:
        w.writerow([fn(r) for _, fn in cols])
    return buf.getvalue()


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, default=str)


def plot(result: dict, out: Path) -> Path:
    """Speed and quality side by side, one bar per measured artifact (rows that failed have no figures)."""
    rows = [r for r in result["rows"] if not r.get("error")]
    if not rows:
        from roots_edge.core.errors import BenchError

        raise BenchError(f"no artifact was measured, so {out} was not drawn: " + "; ".join(failures(result)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [_name(r) for r in rows]
    if result["kind"] == "decoder":
        tg = f"tg{result['config']['gen_tokens']}"
        speed, speed_label = [r["tg_tps"] for r in rows], f"generation {tg} (tokens/s, mean ± sd)"
        spread = [r[tg][1] if isinstance(r.get(tg), list) else 0.0 for r in rows]
        key, quality_label = "top1", "top-1 agreement with the reference"
        if not any(key in r for r in rows):  # no reference: perplexity is what was measured
            key, quality_label = "perplexity", "perplexity on held-out text (lower is better)"
    else:
        speed, speed_label = [r["latency_ms_p50"] for r in rows], "latency at batch 1 (ms, p50 to p90; lower is better)"
        spread = [[0.0] * len(rows), [max(0.0, r["latency_ms_p90"] - r["latency_ms_p50"]) for r in rows]]
        key, quality_label = "agreement", "label agreement with the reference"
    # rows without the figure (the reference itself, or no reference) get no bar, never a made-up one
    measured = [(n, r[key]) for n, r in zip(names, rows) if r.get(key) is not None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2))
    a.barh(names, speed, xerr=spread, color="#3b7dd8", ecolor="#333333", capsize=3)
    a.set_xlabel(speed_label)
    b.barh([n for n, _ in measured], [v for _, v in measured], color="#4caf50")
    b.set_xlabel(quality_label)
    if measured and key != "perplexity":
        b.set_xlim(min(v for _, v in measured) - 0.05, 1.0)
    for ax in (a, b):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(machine_line(result)[:120], fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
