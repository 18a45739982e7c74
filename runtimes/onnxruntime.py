"""ONNX Runtime: explicit-KV-cache decoders and BERT encoders from a `model.onnx` folder. Never imports torch.

    backend = OnnxRuntimeBackend("out/onnx-int8")
    backend.logits(ids)          # (1, T) -> (T, V), a full prefill from an empty cache
    backend.greedy(ids, 40)      # new token ids, the KV cache fed back between steps
    backend.classify_logits(["a great film"])   # encoders with a classifier head
    backend.embed(["some text"])                # encoders without one: mean-pooled, normalised

The graph's input and output names are fixed here, in one place; the exporter imports them.
Sessions run with `session.intra_op.allow_spinning = "0"`: on two cores, spinning worker threads
cost a decode loop 1.7-2.7x under load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Backend, RuntimeLoadError, encode_batch, load_tokenizer, mean_pool, read_json

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"       # external weights, written only past protobuf's 2 GB limit
GENAI_CONFIG = "genai_config.json"  # makes the folder an onnxruntime-genai model too

INPUT_IDS, ATTENTION_MASK, POSITION_IDS, TOKEN_TYPE_IDS = "input_ids", "attention_mask", "position_ids", "token_type_ids"
LOGITS, LAST_HIDDEN_STATE = "logits", "last_hidden_state"
PAST_KEY, PAST_VALUE = "past_key_values.%d.key", "past_key_values.%d.value"      # (B, kv_heads, past, head_dim)
PRESENT_KEY, PRESENT_VALUE = "present.%d.key", "present.%d.value"                # (B, kv_heads, past+T, head_dim)

_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
_HINT = "re-export it with `roots-edge export --target onnx-...`"


def decoder_names(num_layers: int) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a decoder graph, in order."""
    kv_in = [name % i for i in range(num_layers) for name in (PAST_KEY, PAST_VALUE)]
    kv_out = [name % i for i in range(num_layers) for name in (PRESENT_KEY, PRESENT_VALUE)]
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *kv_in], [LOGITS, *kv_out]


def session_options(threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    return so


def check_model_file(folder: Path) -> Path:
    """`folder/model.onnx`, or a `RuntimeLoadError` saying what is missing or damaged."""
    folder = Path(folder)
    path = folder / MODEL_FILE
    if not folder.is_dir():
        raise RuntimeLoadError(f"{folder} is not a folder; an ONNX artifact is a folder holding {MODEL_FILE}")
    if not path.is_file():
        raise RuntimeLoadError(f"{folder} has no {MODEL_FILE}: it is not an ONNX artifact; {_HINT}")
    if path.stat().st_size == 0:
        raise RuntimeLoadError(f"{path} is empty (0 bytes); {_HINT}")
    manifest = read_json(folder / "manifest.json")
    for entry in manifest.get("files", []):  # a cheap truncation check against the export's own record
        f = folder / entry["name"]
        if f.is_file() and f.stat().st_size != entry["bytes"]:
            raise RuntimeLoadError(f"{f} has {f.stat().st_size:,} bytes; the manifest records {entry['bytes']:,}: "
                                   f"the file is truncated or was replaced; {_HINT}")
    return path


class OnnxRuntimeBackend(Backend, format="onnx"):
    """One `onnxruntime.InferenceSession` over an artifact folder written by the ONNX exporter."""

    def __init__(self, folder: str | Path, *, threads: int | None = None, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        path = check_model_file(self.folder)
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads),
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph, ... for one meaning
            raise RuntimeLoadError(f"ONNX Runtime cannot load {path}: {_first_line(exc)}. The file (or its "
                                   f"{DATA_FILE}) may be truncated or corrupt; {_HINT}") from None
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.config = read_json(self.folder / "config.json")
        self.tokenizer = load_tokenizer(self.folder) if (self.folder / "tokenizer.json").is_file() else None
        self.num_layers = sum(1 for name in self.inputs if name.startswith("past_key_values.") and name.endswith(".key"))
        if self.num_layers:
            past = self.inputs[PAST_KEY % 0]
            self.kv_heads, self.head_dim = int(past.shape[1]), int(past.shape[3])  # (B, kv_heads, past, head_dim)
            self.kv_dtype = _NUMPY[past.type]

    @property
    def is_decoder(self) -> bool:
        return self.num_layers > 0

    # ------------------------------------------------------------------ decoders
    def _require_decoder(self) -> None:
        if not self.is_decoder:
            raise NotImplementedError(f"{self.folder} holds an encoder (outputs {self.outputs}); it has no decoder")

    def empty_cache(self, batch: int = 1) -> list[np.ndarray]:
        """Past keys/values of length 0, one (B, kv_heads, 0, head_dim) array per graph input."""
        return [np.zeros((batch, self.kv_heads, 0, self.head_dim), self.kv_dtype) for _ in range(2 * self.num_layers)]

    def decode_step(self, ids: np.ndarray, cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Feed ids (1, T) after the cached tokens: ((T, V) float32 logits, the grown cache)."""
        self._require_decoder()
        past = cache[0].shape[2]
        n = ids.shape[1]
        names, _ = decoder_names(self.num_layers)
        feed = {INPUT_IDS: ids,                                                     # (1, T)
                ATTENTION_MASK: np.ones((1, past + n), dtype=np.int64),             # (1, P+T)
                POSITION_IDS: np.arange(past, past + n, dtype=np.int64)[None]}     # (1, T)
        feed.update(zip(names[3:], cache))                                          # (1, kv, P, hd) each
        logits, *present = self.session.run(None, feed)
        return np.asarray(logits[0], dtype=np.float32), present                    # (T, V), (1, kv, P+T, hd)

    def logits(self, input_ids) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)                  # (1, T)
        self._require_decoder()
        return self.decode_step(ids, self.empty_cache())[0]                         # (T, V)

    def greedy(self, input_ids, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """Greedy continuation of `input_ids`: the new token ids, the EOS included when it is produced."""
        self._require_decoder()
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)                  # (1, T)
        eos = self.config.get("eos_token_id")
        eos = set(eos if isinstance(eos, list) else [eos]) if stop_at_eos and eos is not None else set()
        room = int(self.config.get("max_position_embeddings", 1 << 30)) - ids.shape[1]
        cache, out = self.empty_cache(), []
        for _ in range(max(0, min(max_new_tokens, room))):
            logits, cache = self.decode_step(ids, cache)
            token = int(logits[-1].argmax())
            out.append(token)
            if token in eos:
                break
            ids = np.array([[token]], dtype=np.int64)                               # (1, 1)
        return out

    # ------------------------------------------------------------------ encoders
    def _encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self.tokenizer is None:
            raise RuntimeLoadError(f"{self.folder} has no tokenizer.json; it cannot encode text")
        ids, mask = encode_batch(self.tokenizer, texts, self._pad_id())                 # (B, T) each
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in self.inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)                                     # (B, T)
        return feed

    def _pad_id(self) -> int:
        token = read_json(self.folder / "tokenizer_config.json").get("pad_token")
        pad = self.tokenizer.token_to_id(token) if isinstance(token, str) else None
        return int(pad if pad is not None else self.config.get("pad_token_id") or 0)

    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.is_decoder or LOGITS not in self.outputs:
            raise NotImplementedError(f"{self.folder} has no classifier head (outputs {self.outputs})")
        return np.asarray(self.session.run([LOGITS], self._encode(texts))[0], dtype=np.float32)   # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if LAST_HIDDEN_STATE not in self.outputs:
            raise NotImplementedError(f"{self.folder} has no {LAST_HIDDEN_STATE} output (outputs {self.outputs})")
        feed = self._encode(texts)
        hidden = self.session.run([LAST_HIDDEN_STATE], feed)[0]                          # (N, T, C)
        return mean_pool(np.asarray(hidden, dtype=np.float32), feed[ATTENTION_MASK])    # (N, C)

    def labels(self) -> list[str]:
        id2label = self.config.get("id2label") or {}
        return [id2label[k] for k in sorted(id2label, key=int)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
