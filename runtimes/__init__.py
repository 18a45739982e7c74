"""One runtime for every artifact: `load(path)` picks the backend from the file and returns an
`EdgeModel` with the same verbs on PyTorch, ONNX Runtime, OpenVINO and llama.cpp. Never imports torch
unless the artifact is a PyTorch (Hugging Face) folder."""
from __future__ import annotations

import importlib
from pathlib import Path

from roots_edge.runtimes.base import Backend, FormatFacts, RuntimeLoadError

# format -> backend module, in the order detection asks them (a folder may hold a .gguf and a config.json)
BACKEND_MODULES = {"gguf": "llamacpp", "openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}


def backend_class(fmt: str) -> type[Backend]:
    if fmt not in Backend.registry:
        importlib.import_module(f"roots_edge.runtimes.{BACKEND_MODULES[fmt]}")
    return Backend.registry[fmt]


def backends() -> dict[str, type[Backend]]:
    """Every backend class, in detection order (one registered from elsewhere comes before the Hugging Face
    folder, the weakest claim). Their modules import no runtime library until one loads."""
    for fmt in BACKEND_MODULES:
        backend_class(fmt)
    order = [*list(BACKEND_MODULES)[:-1], *(f for f in Backend.registry if f not in BACKEND_MODULES), "torch"]
    return {fmt: Backend.registry[fmt] for fmt in order}


def facts(fmt: str) -> FormatFacts:
    return backend_class(fmt).facts


def check_exists(path: str | Path) -> Path:
    """`path`, or a `RuntimeLoadError` saying that it does not exist (before anything else is tried on it)."""
    p = Path(path)
    if not p.exists():
        raise RuntimeLoadError(f"{p} does not exist; give an artifact folder, a .gguf / .onnx / .xml file or a "
                               "model folder")
    return p


def detect_format(path: str | Path) -> str:
    """`gguf`, `onnx`, `openvino` or `torch`, from the file itself (magic bytes, file names): the first backend
    class that claims it."""
    p = check_exists(path)
    for fmt, cls in backends().items():
        if cls.claims(p):
            return fmt
    if p.is_file():
        raise RuntimeLoadError(f"{p} is not a GGUF, ONNX or OpenVINO file (no GGUF magic, not .onnx / .xml)")
    from roots_edge.formats.manifest import Manifest

    manifest = Manifest.read(p)
    missing = [f.name for f in manifest.files if not (p / f.name).is_file()] if manifest else []
    if missing:
        raise RuntimeLoadError(f"{p} is an exported artifact ({manifest.target or 'see manifest.json'}) with files "
                               f"missing: {', '.join(missing[:4])} (listed in manifest.json). The copy is incomplete: "
                               f"copy the artifact again or export it again")
    raise RuntimeLoadError(f"{p} holds no model roots-edge can run: expected a .gguf file, model.onnx, "
                           "openvino_model.xml or a Hugging Face folder (config.json + model.safetensors)")


def load(path: str | Path, device: str = "auto", threads: int | None = None, *, context: int | None = None,
         exact: bool = False):
    """Open an artifact (or a Hugging Face folder) on `device` (cpu, gpu, apple, auto).

    `context`: the tokens a decoder holds (prompt + generated), and what llama.cpp sizes its KV cache for;
    default `DEFAULT_CONTEXT` (2048) or the model's maximum if smaller. `exact`: keep the KV cache in f32
    (llama.cpp's default is f16, OpenVINO's CPU default u8) where a comparison needs the reference's numbers.
    """
    from roots_edge.runtimes.edge import EdgeModel

    fmt = detect_format(path)
    try:
        backend = backend_class(fmt)(Path(path), device=device, threads=threads, context=context, exact=exact)
    except ModuleNotFoundError as exc:
        need = facts(fmt)
        if (exc.name or "").split(".")[0] not in need.libraries:
            raise
        raise RuntimeLoadError(f"{path} is a {fmt} artifact; running it needs {exc.name}, which is not installed: "
                               f"pip install 'roots-edge[{need.extra}]'") from None
    return EdgeModel(backend, Path(path))


__all__ = ["load", "detect_format", "RuntimeLoadError"]
