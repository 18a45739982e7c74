"""The names a backend binds, checked against the names a model file declares, when the file loads.

A graph exported by another tool (or edited by hand) can be valid and still not be one the runtime can run: an
input renamed, a KV cache missing, an extra input nobody feeds. Without this check it fails at the first call,
deep inside the runtime library (ONNX Runtime's "Failed to find NodeArg with name: input_ids"). Each backend
states its contract (`Contract`) next to the code that feeds the graph; `check_io` compares and says what to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from roots_edge.core.errors import RuntimeLoadError


@dataclass(frozen=True)
class Contract:
    """What a backend feeds and reads for one kind of model, by name."""

    kind: str                                   # "a decoder with KV cache", "a classifier", ...
    inputs: tuple[str, ...]                     # fed on every call: the graph must take each
    outputs: tuple[str, ...]                    # read by name: the graph must give each
    optional: tuple[str, ...] = ()              # fed only when the graph takes them
    types: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (name, element types the backend feeds / reads)


def short(names: Sequence[str]) -> str:
    """Names in order, runs of numbered names collapsed: `past_key_values.{0..27}.key`."""
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    for name in names:
        match = re.search(r"\.(\d+)\.", name)
        key = name[:match.start()] + ".{}." + name[match.end():] if match else name
        if key not in groups:
            groups[key] = []
            order.append(key)
        if match:
            groups[key].append(int(match.group(1)))
    out = []
    for key in order:
        numbers = groups[key]
        if not numbers:
            out.append(key)
        elif len(numbers) == 1:
            out.append(key.replace("{}", str(numbers[0])))
        else:
            run = "{%d..%d}" % (min(numbers), max(numbers))
            out.append(key.replace("{}", run if sorted(numbers) == list(range(min(numbers), max(numbers) + 1))
                                   else "{" + ",".join(map(str, numbers)) + "}"))
    return ", ".join(out) or "none"


def check_io(where: Path, contract: Contract, inputs: Sequence[Sequence[str]], outputs: Sequence[Sequence[str]],
             types: dict[str, str] | None = None, fix: str = "") -> None:
    """Refuse a model whose ports do not match `contract`. `inputs` / `outputs`: the names of each port (OpenVINO
    gives a port several); `types`: element type by name, where the backend knows it."""
    in_names = {n for port in inputs for n in port}
    out_names = {n for port in outputs for n in port}
    accepted = set(contract.inputs) | set(contract.optional)
    problems = []
    missing_in = [n for n in contract.inputs if n not in in_names]
    unfed = [port[0] for port in inputs if port and not accepted & set(port)]
    missing_out = [n for n in contract.outputs if n not in out_names]
    if missing_in:
        problems.append(f"no input {short(missing_in)}")
    if unfed:
        problems.append(f"input {short(unfed)} that roots-edge does not feed")
    if missing_out:
        problems.append(f"no output {short(missing_out)}")
    for name, allowed in contract.types:
        found = (types or {}).get(name)
        if found is not None and name in in_names | out_names and found not in allowed:
            problems.append(f"{name} of type {found} (expected {' or '.join(allowed)})")
    if not problems:
        return
    optional = f" (and optionally {short(contract.optional)})" if contract.optional else ""
    raise RuntimeLoadError(
        f"{where} does not have the inputs and outputs roots-edge binds for {contract.kind}: expected inputs "
        f"{short(contract.inputs)}{optional} and outputs {short(contract.outputs)}; found inputs "
        f"{short([p[0] for p in inputs if p])} and outputs {short([p[0] for p in outputs if p])}: it has "
        f"{'; '.join(problems)}. {fix}".rstrip())
