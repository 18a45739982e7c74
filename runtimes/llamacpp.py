"""llama.cpp (through llama-cpp-python) over a GGUF artifact. Never imports torch.

    backend = LlamaCppBackend("artifacts/gguf-q4")        # the artifact folder or the .gguf file
    backend.logits(ids)            # decoders: (1, T) -> (T, V) float32, one full prefill
    backend.reset(); backend.forward(ids)   # decode loop: logits (V,) of the last position, KV cache kept
    backend.classify_logits(texts) # BERT classifiers (RANK pooling): (N, C)
    backend.embed(texts)           # BERT embedders (MEAN pooling): (N, H), L2-normalised
    backend.tokenize(text)         # ids from the tokenizer embedded in the file

Batches are built with llama.cpp's own C API (`llama_batch`, `llama_decode` / `llama_encode`), so
the decode loop asks for one row of logits per step and a prefill for exactly the rows it needs.
The KV cache is f32 (llama.cpp's default f16 cache alone moves logits by ~1e-2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from roots_edge.errors import BackendError, ContextOverflowError
from roots_edge.manifest import Manifest

from .base import ENCODER_MAX_TOKENS, GGUF_MAGIC, Backend, RuntimeLoadError, artifact_task



def find_gguf(path: str | Path) -> Path:
    """The .gguf file itself, or the single .gguf inside an artifact folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            names = ", ".join(p.name for p in files) or "none"
            raise RuntimeLoadError(f"{path} holds {len(files)} .gguf files ({names}); expected exactly one. "
                                   "Pass the .gguf file itself.")
        return files[0]
    if not path.exists():
        raise RuntimeLoadError(f"{path} does not exist: expected a .gguf file or a GGUF artifact folder")
    return path


class _Cursor:
    """Sequential little-endian reads that fail loudly at the end of the file."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError(f"the header ends early, at byte {self.f.tell():,}")
        return data

    def skip(self, n: int) -> None:
        if self.f.tell() + n > self.size:
            raise EOFError(f"the header ends early, at byte {self.size:,}")
        self.f.seek(n, 1)

    def uint(self, n: int = 8) -> int:
        return int.from_bytes(self.take(n), "little")

    def string(self) -> bytes:
        return self.take(self.uint())


def _value(cur: _Cursor, vtype: int, keep: bool):
    """Read (keep) or step over (not keep) one metadata value of `gguf.GGUFValueType` vtype."""
    from gguf import GGUFValueType as V

    widths = {V.UINT8: 1, V.INT8: 1, V.BOOL: 1, V.UINT16: 2, V.INT16: 2, V.UINT32: 4, V.INT32: 4,
              V.FLOAT32: 4, V.UINT64: 8, V.INT64: 8, V.FLOAT64: 8}
    if vtype == V.STRING:
        return cur.string().decode("utf-8", "replace") if keep else cur.skip(cur.uint())
    if vtype == V.ARRAY:
        item, count = cur.uint(4), cur.uint()
        if item in widths:
            return cur.skip(widths[item] * count)
        for _ in range(count):
            _value(cur, item, False)
        return None
    if vtype not in widths:
        raise ValueError(f"unknown metadata value type {vtype}")
    raw = cur.take(widths[vtype])
    return int.from_bytes(raw, "little") if keep else None


def read_header(path: Path) -> dict:
    """Check that `path` is a complete GGUF file; return {architecture, tensors, bytes}.

    llama.cpp can abort the whole process on some malformed files, so the header is walked here
    first (with gguf-py's constants; its `GGUFReader` is ~100x slower on a 30k-token vocabulary).
    """
    from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUFValueType, Keys

    size = path.stat().st_size
    hint = "re-export it (roots-edge export ... --force)"
    with path.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise RuntimeLoadError(f"{path} is not a GGUF file: it starts with {magic!r}, a GGUF file with "
                                   f"{GGUF_MAGIC!r}")
        cur, meta = _Cursor(f, size), {}
        try:
            version, n_tensors, n_kv = cur.uint(4), cur.uint(), cur.uint()
            if version < 2 or n_tensors > size or n_kv > size:
                raise ValueError(f"implausible header (version {version}, {n_tensors} tensors, {n_kv} keys)")
            for _ in range(n_kv):
                key = cur.string().decode("utf-8", "replace")
                vtype = cur.uint(4)
                keep = key in (Keys.General.ARCHITECTURE, Keys.General.ALIGNMENT, Keys.General.FILE_TYPE)
                meta[key] = _value(cur, vtype, keep and vtype in (GGUFValueType.STRING, GGUFValueType.UINT32))
            end = 0
            for _ in range(n_tensors):
                cur.string()
                dims = [cur.uint() for _ in range(cur.uint(4))]
                qtype, offset = cur.uint(4), cur.uint()
                block, type_size = GGML_QUANT_SIZES[qtype]
                n = 1
                for d in dims:
                    n *= d
                end = max(end, offset + n // block * type_size)
            align = meta.get(Keys.General.ALIGNMENT) or GGUF_DEFAULT_ALIGNMENT
            data_start = -(-f.tell() // align) * align
        except (EOFError, ValueError, KeyError) as exc:
            raise RuntimeLoadError(f"{path} is truncated or corrupt ({size:,} bytes: {exc}); {hint}") from None
    if data_start + end > size:
        raise RuntimeLoadError(f"{path} is truncated: its tensors need {data_start + end:,} bytes, the file has "
                               f"{size:,}; {hint}")
    return {"architecture": meta.get(Keys.General.ARCHITECTURE), "file_type": meta.get(Keys.General.FILE_TYPE),
            "tensors": n_tensors, "bytes": size}


def precision_name(file_type: int | None) -> str:
    """`general.file_type` as llama.cpp names it: 15 -> "Q4_K_M", 0 -> "F32"."""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return "unknown"


class LlamaCppBackend(Backend, format="gguf"):
    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, *,
                 n_ctx: int | None = None, f32_kv: bool = True):
        import llama_cpp

        from .devices import place

        self.path = find_gguf(path)
        self.header = read_header(self.path)
        self.encoder = self.header["architecture"] == "bert"
        self.placement = place("llamacpp", device)
        kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_kv else {}
        ctx = n_ctx or 0  # 0: the model's own context length
        try:
            self.llm = llama_cpp.Llama(
                str(self.path), n_gpu_layers=0 if self.placement.device == "cpu" else -1, n_ctx=ctx,
                n_batch=ctx or 4096, n_ubatch=ctx or 4096, n_threads=threads, n_threads_batch=threads,
                embedding=self.encoder, verbose=False, **kv)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise RuntimeLoadError(f"llama.cpp could not load {self.path}: {exc}") from None
        model = self.llm.model
        self.n_ctx, self.n_batch = self.llm.n_ctx(), self.llm.n_batch
        self.n_vocab = self.llm.n_vocab()
        self.context_length = llama_cpp.llama_model_n_ctx_train(model)
        self.eos_ids = {t for t in (self.llm.token_eos(),) if t >= 0}
        pooling = llama_cpp.llama_pooling_type(self.llm.ctx)
        self.rank = self.encoder and pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK
        self.mean = self.encoder and pooling == llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self.labels = ([(llama_cpp.llama_model_cls_label(model, i) or b"").decode()
                        for i in range(llama_cpp.llama_model_n_cls_out(model))] if self.rank else [])
        self.task = artifact_task(Manifest.read(self.path.parent), "causal-lm" if not self.encoder else
                                  "classification" if self.rank else "embedding", self.path.parent)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.n_past = 0

    # ------------------------------------------------------------------ decoders
    def reset(self) -> None:
        """Forget the KV cache: the next `forward` starts a new sequence at position 0."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.llm.ctx)
        if memory:  # encoders usually have none
            llama_cpp.llama_memory_clear(memory, True)
        self.n_past = 0

    def _decode(self, ids: list[int], all_logits: bool) -> np.ndarray:
        """Append `ids` to the KV cache; logits (T, V) of every position, or (V,) of the last one."""
        import llama_cpp

        if self.encoder:
            raise NotImplementedError(f"{self.path.name} is an encoder; it has no next-token logits")
        if not ids or self.n_past + len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{self.n_past} + {len(ids)} tokens do not fit the context of {self.n_ctx}")
        rows, b = [], self._batch
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start:start + self.n_batch]
            last = start + len(chunk) == len(ids)
            for j, tok in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j], b.seq_id[j][0] = tok, self.n_past + j, 1, 0
                b.logits[j] = all_logits or (last and j == len(chunk) - 1)
            b.n_tokens = len(chunk)
            if llama_cpp.llama_decode(self.llm.ctx, b) != 0:
                raise BackendError(f"llama_decode failed at position {self.n_past} ({len(chunk)} tokens)")
            self.n_past += len(chunk)
            if all_logits:
                ptr = llama_cpp.llama_get_logits(self.llm.ctx)
                rows.append(np.ctypeslib.as_array(ptr, shape=(len(chunk), self.n_vocab)).copy())  # (t, V)
        if all_logits:
            return np.concatenate(rows)                                                         # (T, V)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)).copy()

    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        """(1, T) -> (T, V) float32: a full prefill from an empty cache."""
        self.reset()
        return self._decode([int(i) for i in np.asarray(input_ids).reshape(-1)], all_logits=True)

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """Feed `ids` after what the cache holds; (V,) logits of the last one."""
        flat = np.asarray(ids).reshape(-1)
        if flat.size == 1 and not self.encoder and self.n_past < self.n_ctx:
            return self._step(int(flat[0]))
        return self._decode([int(i) for i in flat], all_logits=False)

    def _step(self, token: int) -> np.ndarray:
        """The decode loop's hot path: one token in, one row of logits out, nothing else per call."""
        import llama_cpp

        b = self._batch
        b.token[0], b.pos[0], b.n_seq_id[0], b.seq_id[0][0], b.logits[0] = token, self.n_past, 1, 0, True
        b.n_tokens = 1
        if llama_cpp.llama_decode(self.llm.ctx, b) != 0:
            raise BackendError(f"llama_decode failed at position {self.n_past}")
        self.n_past += 1
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)).copy()

    # ------------------------------------------------------------------ text
    def tokenize(self, text: str) -> list[int]:
        """Ids as Hugging Face gives them: BOS (decoders) or [CLS] ... [SEP] (BERT) added, and special
        tokens written in the text (e.g. "</s>") parsed as such, as `tokenizers` does."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(list(ids), special=False).decode("utf-8", "replace")

    # ------------------------------------------------------------------ encoders
    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        if not self.rank:
            raise NotImplementedError(f"{self.path.name} has no classifier head (its pooling type is not RANK)")
        return self._pooled(texts, len(self.labels))                       # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.mean:
            raise NotImplementedError(f"{self.path.name} is not a mean-pooling embedding model")
        pooled = self._pooled(texts, self.llm.n_embd())                     # (N, H)
        return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)

    def _encode(self, text: str) -> list[int]:
        """[CLS] pieces [SEP], truncated like transformers' `truncation=True` (the [SEP] is kept)."""
        ids = self.tokenize(text)
        limit = min(ENCODER_MAX_TOKENS, self.n_ctx, self.n_batch)
        return ids if len(ids) <= limit else ids[:limit - 1] + ids[-1:]

    def _pooled(self, texts: Sequence[str], width: int) -> np.ndarray:
        """One pooled row per text, several texts per `llama_encode` call (one sequence id each)."""
        import llama_cpp

        seqs = [self._encode(t) for t in texts]
        out = np.empty((len(seqs), width), dtype=np.float32)
        n_seq_max, b = self.llm.context_params.n_seq_max, self._batch
        i = 0
        while i < len(seqs):
            rows, n = [], 0
            while i < len(seqs) and n + len(seqs[i]) <= self.n_batch and len(rows) < n_seq_max:
                for pos, tok in enumerate(seqs[i]):
                    b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0], b.logits[n] = tok, pos, 1, len(rows), True
                    n += 1
                rows.append(i)
                i += 1
            b.n_tokens = n
            self.reset()
            if llama_cpp.llama_encode(self.llm.ctx, b) != 0:
                raise BackendError(f"llama_encode failed on {len(rows)} texts ({n} tokens)")
            for seq, row in enumerate(rows):
                ptr = llama_cpp.llama_get_embeddings_seq(self.llm.ctx, seq)
                out[row] = np.ctypeslib.as_array(ptr, shape=(width,))
        return out

    # ------------------------------------------------------------------ housekeeping
    def info(self) -> dict:
        return {"format": "gguf", "precision": precision_name(self.header["file_type"]), "backend": "llamacpp",
                "device": self.placement.device, "setting": self.placement.setting,
                "file_size": self.header["bytes"], "context_length": self.context_length, "task": self.task,
                "labels": self.labels, "file": self.path.name}

    def close(self) -> None:
        import llama_cpp

        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: llama_cpp may already be gone
            pass
