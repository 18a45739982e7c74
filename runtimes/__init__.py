"""One runtime for every artifact: `load(path)` picks the backend from the file and returns an
`EdgeModel` with the same verbs on PyTorch, ONNX Runtime, OpenVINO and llama.cpp. Never imports torch
unless the artifact is a PyTorch (Hugging Face) folder."""
from __future__ import annotations

import importlib
from pathlib import Path

from roots_edge.formats.gguf import GGUF_MAGIC

from roots_edge.runtimes.base import Backend, RuntimeLoadError

BACKEND_MODULES = {"gguf": "llamacpp", "onnx": "onnxruntime", "openvino": "openvino", "torch": "torch"}


def check_exists(path: str | Path) -> Path:
    """`path`, or a `RuntimeLoadError` saying that it does not exist (before anything else is tried on it)."""
    p = Path(path)
    if not p.exists():
        raise RuntimeLoadError(f"{p} does not exist; give an artifact folder, a .gguf / .onnx / .xml file or a "
                               "model folder")
    return p


def detect_format(path: str | Path) -> str:
    """`gguf`, `onnx`, `openvino` or `torch`, from the file itself (magic bytes, file names)."""
    p = check_exists(path)
    if p.is_file():
        with p.open("rb") as f:
            if f.read(4) == GGUF_MAGIC:
                return "gguf"
        if p.suffix == ".onnx":
            return "onnx"
        if p.suffix == ".xml":
            return "openvino"
        raise RuntimeLoadError(f"{p} is not a GGUF, ONNX or OpenVINO file (no GGUF magic, not .onnx / .xml)")
    if any(p.glob("*.gguf")):
        return "gguf"
    if (p / "openvino_model.xml").is_file():
        return "openvino"
    if (p / "model.onnx").is_file() or any(p.glob("*.onnx")):
        return "onnx"
    if (p / "config.json").is_file() and any(p.glob("*.safetensors")):
        return "torch"
    from roots_edge.formats.manifest import Manifest

    manifest = Manifest.read(p)
    missing = [f.name for f in manifest.files if not (p / f.name).is_file()] if manifest else []
    if missing:
        raise RuntimeLoadError(f"{p} is an exported artifact ({manifest.target or 'see manifest.json'}) with files "
                               f"missing: {', '.join(missing[:4])} (listed in manifest.json). The copy is incomplete: "
                               f"copy the artifact again or export it again")
    raise RuntimeLoadError(f"{p} holds no model roots-edge can run: expected a .gguf file, model.onnx, "
                           "openvino_model.xml or a Hugging Face folder (config.json + model.safetensors)")


def backend_class(fmt: str) -> type[Backend]:
    importlib.import_module(f"roots_edge.runtimes.{BACKEND_MODULES[fmt]}")
    return Backend.registry[fmt]


# format -> (the libraries its backend needs, the extra that installs them)
EXTRAS = {"gguf": (("llama_cpp", "gguf"), "gguf"), "onnx": (("onnxruntime", "onnx"), "onnx"),
          "openvino": (("openvino", "openvino_tokenizers"), "openvino"), "torch": (("torch", "transformers"), "train")}


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
        libraries, extra = EXTRAS[fmt]
        if (exc.name or "").split(".")[0] not in libraries:
            raise
        raise RuntimeLoadError(f"{path} is a {fmt} artifact; running it needs {exc.name}, which is not installed: "
                               f"pip install 'roots-edge[{extra}]'") from None
    return EdgeModel(backend, Path(path))


__all__ = ["load", "detect_format", "RuntimeLoadError"]
