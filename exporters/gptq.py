"""GPTQ for ONNX Runtime's 4-bit `MatMulNBits` blocks, computed in PyTorch from calibration text.

Round-to-nearest rounds every weight on its own. GPTQ rounds the input channels of a matrix one after another
and, after each, moves the error it left onto the channels not yet rounded, in proportion to how the
calibration activations correlate them (the inverse of H = XᵀX): what the layer outputs on real text is
kept, not each weight. The grid is exactly ONNX Runtime's 4-bit block: per output row and block of `block`
input channels one scale (and, asymmetric, one zero point; the exporter's choice), codes in 0..15, two per
byte, low nibble first. The exporter lets ONNX Runtime's quantizer build the graph first (which node is 4-bit,
8-bit or float, shared tables) and then writes GPTQ's codes, scales and zero points into the 4-bit blocks.

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers" (2022):
the column order, lazy block updates and the Cholesky form of the inverse Hessian follow the paper.
"""
from __future__ import annotations

import re
import sys

import numpy as np

from roots_edge.exporters.imatrix import MAX_TOKENS, input_statistics

PERCDAMP = 0.01   # dampening: 1% of the mean diagonal of H, the paper's default
SHARED_INPUT = re.compile(r"\.(q_proj|k_proj|v_proj)$|\.(gate_proj|up_proj)$")


def _input_key(module_name: str) -> str:
    """Matrices that read the same activations share one H: q/k/v, and gate/up."""
    m = SHARED_INPUT.search(module_name)
    if not m:
        return module_name
    return module_name[:m.start()] + (".qkv" if m.group(1) else ".gate_up")


def hessians(source, texts: list[str], modules: dict[str, object], max_tokens: int = MAX_TOKENS) -> tuple[dict, int]:
    """({module name: H = XᵀX / tokens (float64, in x in)}, tokens) for the given {name: `nn.Linear`}."""
    groups: dict[str, list] = {}
    for name, module in modules.items():
        groups.setdefault(_input_key(name), []).append(module)
    means, _, tokens = input_statistics(source, texts, groups, lambda x: x.T @ x, max_tokens)
    return {name: means[_input_key(name)] for name in modules}, tokens


def gptq_blocks(weight, hessian, block: int,
                symmetric: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """GPTQ of one (out, in) matrix onto 4-bit blocks of `block` input channels, in `MatMulNBits` layout:
    (packed codes (out, in // block, block // 2) uint8, scales (out, in // block) float32, packed zero points
    (out, ceil(in // block / 2)) uint8 or None when symmetric). Symmetric: scale = the block's largest-magnitude
    value / -8, zero point 8; asymmetric: scale = (max(w, 0) - min(w, 0)) / 15, zero point round(-min / scale),
    as ONNX Runtime's own quantizer computes them."""
    import torch

    w = weight.detach().double().clone()                       # (N, K)
    n, k = w.shape
    h = hessian.double().clone()
    dead = torch.diag(h) == 0                                   # channels the text never excited
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += PERCDAMP * torch.diag(h).mean() * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.empty((n, k), dtype=torch.uint8)
    scales = torch.empty((n, k // block), dtype=torch.float64)
    zeros = torch.full((n, k // block), 8.0, dtype=torch.float64)
    for g in range(0, k, block):
        part = w[:, g:g + block].clone()                        # (N, block), already carrying earlier errors
        inv = hinv[g:g + block, g:g + block]
        if symmetric:
            scale = part.gather(1, part.abs().argmax(1, keepdim=True))[:, 0] / -8.0
        else:
            low, high = part.min(1).values.clamp(max=0), part.max(1).values.clamp(min=0)
            scale = ((high.float() - low.float()) / 15.0).double()   # in float32, as ONNX Runtime computes it
        scale[scale == 0] = 1.0
        scales[:, g // block] = scale.float().double()         # the stored (float32) scale rounds the codes
        s = scales[:, g // block]
        if not symmetric:
            zeros[:, g // block] = torch.clamp(torch.round(-low / s), 0, 15)
        z = zeros[:, g // block]
        errors = torch.empty_like(part)
        for i in range(part.shape[1]):
            col = part[:, i]
            q = torch.clamp(torch.round(col / s) + z, 0, 15)
            err = (col - (q - z) * s) / inv[i, i]
            part[:, i:] -= err[:, None] * inv[i, i:][None, :]
            errors[:, i] = err
            codes[:, g + i] = q.to(torch.uint8)
        w[:, g + block:] -= errors @ hinv[g:g + block, g + block:]
    c = codes.numpy().reshape(n, k // block, block)
    packed = (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)
    if symmetric:
        return packed, scales.float().numpy(), None
    z = zeros.numpy().astype(np.uint8)
    z = np.pad(z, ((0, 0), (0, z.shape[1] % 2)))                # two 4-bit zero points per byte
    return packed, scales.float().numpy(), (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8)


def node_module(node_name: str, module_names) -> str | None:
    """The torch module a `MatMulNBits` node came from: "/model/model/layers.0/self_attn/q_proj/MatMul_Q4" ->
    "model.layers.0.self_attn.q_proj" (the longest module path its scope ends with)."""
    scope = ".".join(p for p in node_name.split("/")[:-1] if p)
    best = [m for m in module_names if scope == m or scope.endswith("." + m)]
    return max(best, key=len) if best else None


def apply_gptq(model, source, texts: list[str], block: int, symmetric: bool = True,
               max_tokens: int = MAX_TOKENS) -> dict:
    """Write GPTQ's codes and scales (and, asymmetric, zero points) into every symmetric 4-bit `MatMulNBits`
    of `model` (an ONNX ModelProto that ONNX Runtime's quantizer produced from `source.model`); returns what
    was done."""
    import onnx
    import torch

    linears = {name: m for name, m in source.model.named_modules() if isinstance(m, torch.nn.Linear)}
    inits = {t.name: t for t in model.graph.initializer}
    jobs = []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs["bits"] != 4 or attrs["block_size"] != block or (len(node.input) > 3 and node.input[3]):
            continue                                            # 8-bit, another block, or asymmetric (HQQ)
        module = node_module(node.name, linears)
        if module is not None and attrs["K"] % block == 0:    # a padded last block keeps ONNX Runtime's rounding
            jobs.append((node, module))
    if not jobs:
        return {"matrices": 0}
    hs, tokens = hessians(source, texts, {m: linears[m] for _, m in jobs}, max_tokens)
    from tqdm.auto import tqdm

    # matrices that read the same activations (q/k/v, gate/up) share H, and GPTQ treats every output row on
    # its own: one pass over their stacked rows gives each the codes of its own pass, in one column loop
    groups: dict[str, list] = {}
    for node, module in jobs:
        groups.setdefault(_input_key(module), []).append((node, module))
    for group in tqdm(groups.values(), desc="GPTQ", unit="group", leave=False, disable=not sys.stderr.isatty()):
        weights = [linears[module].weight for _, module in group]
        stacked = gptq_blocks(torch.cat(weights), hs[group[0][1]], block, symmetric)
        start = 0
        for (node, _), weight in zip(group, weights):
            rows = slice(start, start + weight.shape[0])
            start = rows.stop
            _write_node(model, inits, node, *(None if a is None else a[rows] for a in stacked))
    return {"matrices": len(jobs), "calibration_tokens": tokens, "percdamp": PERCDAMP, "symmetric": symmetric}


def _write_node(model, inits: dict, node, packed, scales, zeros) -> None:
    """Replace a `MatMulNBits` node's codes and scales (and add its zero points) with GPTQ's."""
    from onnx import numpy_helper

    for name, array in ((node.input[1], packed), (node.input[2], scales)):
        old = inits[name]
        if tuple(old.dims) != array.shape:
            raise ValueError(f"{node.name}: GPTQ made {array.shape} for {name}, the graph holds {tuple(old.dims)}")
        old.CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(old).dtype), name))
    if zeros is not None:                                       # MatMulNBits input 3: packed uint8 zero points
        name = f"{node.input[1]}_zero_points"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(zeros), name))
        node.input.append(name)
