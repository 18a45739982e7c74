"""Tracing a torch module into an ONNX file, the one way every ONNX export here goes through.

The TorchScript exporter (`dynamo=False`) is used on purpose: on our Llama wrappers it gives the same
logits as the dynamo exporter (both ~2e-6 from PyTorch, prefill and decode) in ~1 s instead of ~12 s,
and its larger graph decoded no slower in ONNX Runtime once the weights are 256 wide.

Encoders are traced with eager attention: an sdpa trace can decide "no padding" from the example mask and
bake that in; eager keeps the mask a real input. Decoders trace with `onnx_attention.fused_attention` instead.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path


@contextlib.contextmanager
def eager_attention(model):
    """Temporarily switch a transformers model to eager attention."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def trace_to_onnx(module, model, example: tuple, path: Path, inputs: list[str], outputs: list[str],
                  axes: dict[str, dict[int, str]], opset: int, attention=eager_attention,
                  custom_opsets: dict[str, int] | None = None) -> None:
    """Trace `module` (a wrapper around the transformers `model`) on `example` into `path`, weights inline;
    `attention(model)`: the context the model runs in (eager attention, or `onnx_attention.fused_attention`)."""
    import torch

    with attention(model), torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about every Python branch on a shape inside transformers; they are expected
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        torch.onnx.export(module, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True,
                          custom_opsets=custom_opsets,
                          # the fused attention's Function has a symbolic: keep the exporter from also inlining its
                          # traced forward (which fails on one-head models, "Argument passed to at() was not in the map")
                          autograd_inlining=False)
