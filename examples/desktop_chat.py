"""Embedding the roots-edge runtime in a desktop app: a Tk window that streams generated text.

    python examples/desktop_chat.py ARTIFACT            # a window (needs a display)
    python examples/desktop_chat.py ARTIFACT --headless  # the same streaming path, printed to the terminal

The model runs on a worker thread; pieces of text cross to the UI thread through a queue, which the
window drains every 30 ms — the UI never blocks on the model. Works with any artifact `roots_edge.load`
opens (GGUF, ONNX, OpenVINO, a model folder) and needs no torch for the first three.
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
from typing import Callable

DONE = object()


class StreamController:
    """Runs one generation at a time on a worker thread and hands pieces to `deliver` via a queue."""

    def __init__(self, model, max_new_tokens: int = 64):
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.pieces: queue.Queue = queue.Queue()
        self.worker: threading.Thread | None = None

    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def submit(self, prompt: str) -> None:
        if self.busy():
            raise RuntimeError("a generation is already running")

        def work():
            try:
                for piece in self.model.generate(prompt, self.max_new_tokens, stream=True):
                    self.pieces.put(piece)
            except Exception as exc:  # shown in the UI rather than lost on a thread
                self.pieces.put(f"\n[error: {exc}]")
            self.pieces.put(DONE)

        self.worker = threading.Thread(target=work, daemon=True)
        self.worker.start()

    def drain(self, deliver: Callable[[str], None]) -> bool:
        """Deliver what has arrived; True once the generation has finished."""
        while True:
            try:
                item = self.pieces.get_nowait()
            except queue.Empty:
                return False
            if item is DONE:
                return True
            deliver(item)


def run_headless(model, prompt: str, max_new_tokens: int, out=sys.stdout) -> str:
    ctl = StreamController(model, max_new_tokens)
    received: list[str] = []

    def deliver(piece: str) -> None:
        received.append(piece)
        out.write(piece)
        out.flush()

    ctl.submit(prompt)
    while not ctl.drain(deliver):
        ctl.worker.join(0.01)
    out.write("\n")
    return "".join(received)


def run_window(model, max_new_tokens: int) -> None:  # pragma: no cover - needs a display
    import tkinter as tk

    root = tk.Tk()
    root.title(f"roots-edge — {model.info().get('format')} {model.info().get('precision')}")
    text = tk.Text(root, wrap="word", height=24, width=90)
    entry = tk.Entry(root, width=90)
    text.pack(fill="both", expand=True)
    entry.pack(fill="x")
    ctl = StreamController(model, max_new_tokens)

    def poll():
        if ctl.drain(lambda piece: (text.insert("end", piece), text.see("end"))):
            text.insert("end", "\n\n")
            entry.configure(state="normal")
        elif ctl.busy():
            root.after(30, poll)

    def send(_event=None):
        prompt = entry.get().strip()
        if not prompt or ctl.busy():
            return
        entry.delete(0, "end")
        entry.configure(state="disabled")
        text.insert("end", prompt)
        ctl.submit(prompt)
        root.after(30, poll)

    entry.bind("<Return>", send)
    entry.focus_set()
    root.mainloop()


def main(argv=None) -> None:
    from roots_edge.runtimes import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact")
    ap.add_argument("--headless", action="store_true")
    ap.add_argument("--prompt", default="Return the")
    ap.add_argument("-n", "--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    model = load(args.artifact, device=args.device)
    if args.headless:
        run_headless(model, args.prompt, args.max_new_tokens)
    else:
        run_window(model, args.max_new_tokens)


if __name__ == "__main__":
    main()
