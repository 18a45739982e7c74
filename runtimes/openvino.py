"""OpenVINO runtime: stateful KV-cache decoders and encoders from an IR folder. Never imports torch.

    backend = OpenVinoBackend("out/openvino-int4")
    backend.logits(ids)          # (1, T) -> (T, V), a full prefill from an empty state
    backend.greedy(ids, 40)      # new token ids, the KV cache kept in the model's state between steps

Compiled with f32 inference and an f32 KV cache: the CPU defaults (bf16 compute, u8 cache) drift from
the PyTorch reference, and greedy text diverges after a few dozen tokens.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Backend, RuntimeLoadError, encode_batch, load_tokenizer, mean_pool, read_json

MODEL_XML = "openvino_model.xml"
PARITY_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}


def check_ir(folder: Path) -> tuple[Path, Path]:
    """(xml, bin) of an IR folder, or a `RuntimeLoadError` saying what is missing or damaged."""
    folder = Path(folder)
    xml, weights = folder / MODEL_XML, folder / "openvino_model.bin"
    hint = "re-export it with `roots-edge export --target openvino-...`"
    if not folder.is_dir():
        raise RuntimeLoadError(f"{folder} is not a folder; an OpenVINO artifact is a folder holding {MODEL_XML}")
    if not xml.is_file():
        raise RuntimeLoadError(f"{folder} has no {MODEL_XML}: it is not an OpenVINO IR artifact; {hint}")
    if not weights.is_file():
        raise RuntimeLoadError(f"{folder} has {MODEL_XML} but no openvino_model.bin (the weights); {hint}")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise RuntimeLoadError(f"{xml} is corrupt (not valid XML: {exc}); {hint}") from None
    if root.tag != "net":
        raise RuntimeLoadError(f"{xml} is XML but not an OpenVINO IR (root <{root.tag}>, expected <net>); {hint}")
    manifest = read_json(folder / "manifest.json")
    for entry in manifest.get("files", []):  # a cheap truncation check against the export's own record
        path = folder / entry["name"]
        if path.is_file() and path.stat().st_size != entry["bytes"]:
            raise RuntimeLoadError(f"{path} has {path.stat().st_size:,} bytes; the manifest records "
                                   f"{entry['bytes']:,}: the file is truncated or was replaced; {hint}")
    return xml, weights


class OpenVinoBackend(Backend, format="openvino"):
    """One compiled model and one infer request over an IR folder written by the OpenVINO exporter."""

    def __init__(self, folder: str | Path, *, threads: int | None = None, device: str = "CPU"):
        import openvino as ov

        self.folder = Path(folder)
        xml, weights = check_ir(self.folder)
        core = ov.Core()
        try:
            model = core.read_model(str(xml), str(weights))
        except RuntimeError as exc:
            raise RuntimeLoadError(f"OpenVINO cannot read {xml}: {_first_line(exc)}. The .bin may be truncated "
                                   "or belong to another export; re-export the artifact.") from None
        self.inputs = [p.get_any_name() for p in model.inputs]
        self.outputs = [p.get_any_name() for p in model.outputs]
        self.stateful = bool(model.get_sinks())
        config = dict(PARITY_CONFIG)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise RuntimeLoadError(f"OpenVINO cannot compile {xml} for {device}: {_first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.config = read_json(self.folder / "config.json")
        self.tokenizer = load_tokenizer(self.folder) if (self.folder / "tokenizer.json").is_file() else None

    # ------------------------------------------------------------------ decoders
    def _require_decoder(self) -> None:
        if not self.stateful:
            raise NotImplementedError(f"{self.folder} holds an encoder (outputs {self.outputs}); it has no decoder")

    def _step(self, ids: np.ndarray, past: int) -> np.ndarray:
        """Feed ids (1, T) after `past` cached tokens; (T, V) float32 logits."""
        n = ids.shape[1]
        self.request.start_async({
            "input_ids": ids,                                                  # (1, T)
            "attention_mask": np.ones((1, past + n), dtype=np.int64),         # (1, P+T)
            "position_ids": np.arange(past, past + n, dtype=np.int64)[None],  # (1, T)
            "beam_idx": np.zeros(1, dtype=np.int32),                          # (1,)
        })
        self.request.wait()
        return self.request.get_tensor("logits").data[0]                     # (T, V)

    def logits(self, input_ids) -> np.ndarray:
        self._require_decoder()
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)           # (1, T)
        self.request.reset_state()
        return np.array(self._step(ids, 0), dtype=np.float32)                 # (T, V)

    def greedy(self, input_ids, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """Greedy continuation of `input_ids`: the new token ids, the EOS included when it is produced."""
        self._require_decoder()
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)           # (1, T)
        eos = self.config.get("eos_token_id")
        eos = set(eos if isinstance(eos, list) else [eos]) if stop_at_eos and eos is not None else set()
        room = int(self.config.get("max_position_embeddings", 1 << 30)) - ids.shape[1]
        self.request.reset_state()
        out: list[int] = []
        past, step_ids = 0, ids
        for _ in range(max(0, min(max_new_tokens, room))):
            logits = self._step(step_ids, past)
            past += step_ids.shape[1]
            token = int(logits[-1].argmax())
            out.append(token)
            if token in eos:
                break
            step_ids = np.array([[token]], dtype=np.int64)                    # (1, 1)
        return out

    # ------------------------------------------------------------------ encoders
    def _encoder_outputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.stateful:
            raise NotImplementedError(f"{self.folder} holds a stateful decoder; it has no encoder head")
        if self.tokenizer is None:
            raise RuntimeLoadError(f"{self.folder} has no tokenizer.json; texts cannot be encoded")
        ids, mask = encode_batch(self.tokenizer, texts, self._pad_id())        # (N, T), (N, T)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        result = self.request.infer(feed)
        return np.array(result[self.compiled.output(0)], dtype=np.float32), mask

    def _pad_id(self) -> int:
        pad = self.config.get("pad_token_id")
        if pad is None:
            pad = next((self.tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>", "<|pad|>")
                        if self.tokenizer.token_to_id(t) is not None), 0)
        return int(pad)

    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        if "logits" not in self.outputs:
            raise NotImplementedError(f"{self.folder} has no classifier head (outputs {self.outputs})")
        return self._encoder_outputs(texts)[0]                               # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if "last_hidden_state" not in self.outputs:
            raise NotImplementedError(f"{self.folder} does not output hidden states (outputs {self.outputs})")
        hidden, mask = self._encoder_outputs(texts)                            # (N, T, C)
        return mean_pool(hidden, mask)                                          # (N, C)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__

