"""What a PyTorch model's layers see on calibration data: sums of a statistic of the activations that enter
(or leave) chosen modules, over every forward pass. One tool for the quantizers' importance matrices and
Hessians (`exporters/imatrix.py`, `exporters/gptq.py`) and for pruning's channel and block scores
(`roots_edge/train/prune.py`).

    with Activations(lambda x: (x * x).sum(0)) as acts:     # per input channel: sum of squares
        acts.inputs("down.0", model.layers[0].mlp.down_proj)
        acts.run(body, batches)
    acts.mean("down.0")                                       # (in_features,) float64

Every tapped tensor is flattened to (tokens, features) and reduced in float32 (per pass: 512 tokens at most,
what llama.cpp's imatrix and GPTQ's reference code do); sums over passes are kept in float64. A key is counted
once per pass even when several modules read the same tensor (q, k and v of one layer).
"""
from __future__ import annotations

import sys


class Activations:
    def __init__(self, reduce):
        self.reduce = reduce
        self.sums: dict = {}
        self.counts: dict = {}
        self._seen: set = set()
        self._handles: list = []

    def __enter__(self) -> "Activations":
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def add(self, key, x) -> None:
        """Count `x` (..., features) under `key`, once per pass."""
        if key in self._seen:
            return
        self._seen.add(key)
        flat = x.detach().reshape(-1, x.shape[-1]).float()       # (tokens, features)
        self.sums[key] = self.sums.get(key, 0) + self.reduce(flat).double()
        self.counts[key] = self.counts.get(key, 0) + flat.shape[0]

    def inputs(self, key, *modules) -> None:
        """Tap the first input of each of `modules` under one `key`."""
        for module in modules:
            self._handles.append(module.register_forward_hook(lambda _m, args, _out: self.add(key, args[0])))

    def outputs(self, key, module) -> None:
        """Tap what `module` returns (a tensor)."""
        self._handles.append(module.register_forward_hook(lambda _m, _args, out: self.add(key, out)))

    def hook(self, module, fn) -> None:
        """Any other forward hook `fn(module, args, kwargs, output)` that must end with the measurement."""
        self._handles.append(module.register_forward_hook(fn, with_kwargs=True))

    def run(self, forward, batches, *, desc: str = "calibration", progress: bool = True) -> None:
        """`forward(batch)` for every batch, under inference mode, with a progress bar where someone watches."""
        import torch
        from tqdm.auto import tqdm

        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", leave=False,
                              disable=not progress or not sys.stderr.isatty()):
                self._seen.clear()
                forward(batch)

    def mean(self, key):
        """The statistic's sum over every counted token, divided by their number."""
        return self.sums[key] / self.counts[key]
