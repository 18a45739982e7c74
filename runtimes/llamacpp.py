"""llama.cpp (through llama-cpp-python) over a GGUF artifact. Never imports torch.

    backend = LlamaCppBackend("artifacts/gguf-q4")        # the artifact folder or the .gguf file
    backend.logits(ids)            # decoders: (1, T) -> (T, V) float32, one full prefill
    backend.classify_logits(texts) # BERT classifiers (RANK pooling): (N, C)
    backend.embed(texts)           # BERT embedders (MEAN pooling): (N, H), L2-normalised
    backend.tokenize(text)         # ids from the tokenizer embedded in the file

The KV cache is f32 (llama.cpp's default is f16, which alone moves logits by ~1e-2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .base import ENCODER_MAX_TOKENS, Backend, RuntimeLoadError

GGUF_MAGIC = b"GGUF"


def find_gguf(path: str | Path) -> Path:
    """The .gguf file itself, or the single .gguf inside an artifact folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            raise RuntimeLoadError(f"{path} holds {len(files)} .gguf files ({', '.join(p.name for p in files) or 'none'}); "
                                   "expected exactly one. Pass the .gguf file itself.")
        return files[0]
    if not path.exists():
        raise RuntimeLoadError(f"{path} does not exist: expected a .gguf file or a GGUF artifact folder")
    return path


def read_header(path: Path) -> dict:
    """Check that `path` is a complete GGUF file and return {architecture, tensors, bytes}.

    llama.cpp may abort the process on some malformed files, so the header is read here first.
    """
    from gguf import GGUFReader, Keys

    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise RuntimeLoadError(f"{path} is not a GGUF file: it starts with {magic!r}, a GGUF file with {GGUF_MAGIC!r}")
    hint = "re-export it (roots-edge export ... --force)"
    try:
        reader = GGUFReader(path)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
        arch = reader.fields[Keys.General.ARCHITECTURE].contents()
    except Exception as exc:  # the reader raises ValueError/IndexError/KeyError for cut or corrupt headers
        raise RuntimeLoadError(f"{path} is truncated or corrupt ({size:,} bytes; {type(exc).__name__}: {exc}); "
                               f"{hint}") from None
    if end > size:
        raise RuntimeLoadError(f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}; {hint}")
    return {"architecture": arch, "tensors": len(reader.tensors), "bytes": size}


class LlamaCppBackend(Backend, format="gguf"):
    def __init__(self, path: str | Path, *, n_ctx: int | None = None, threads: int | None = None, f32_kv: bool = True):
        import llama_cpp

        self.path = find_gguf(path)
        self.header = read_header(self.path)
        self.encoder = self.header["architecture"] == "bert"
        kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_kv else {}
        ctx = n_ctx or 0  # 0: the model's own context length
        try:
            self.llm = llama_cpp.Llama(
                str(self.path), n_ctx=ctx, n_batch=ctx or 2048, n_ubatch=ctx or 2048, n_threads=threads,
                n_threads_batch=threads, logits_all=not self.encoder, embedding=self.encoder, verbose=False, **kv)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise RuntimeLoadError(f"llama.cpp could not load {self.path}: {exc}") from None
        self.n_ctx = self.llm.n_ctx()

    # ------------------------------------------------------------------ decoders
    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        ids = [int(i) for i in np.asarray(input_ids).reshape(-1)]
        if self.encoder:
            raise NotImplementedError(f"{self.path.name} is an encoder; it has no next-token logits")
        if not 0 < len(ids) <= self.n_ctx:
            raise ValueError(f"{len(ids)} tokens do not fit the context of {self.n_ctx}")
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[:len(ids)], dtype=np.float32)   # (T, V)

    def tokenize(self, text: str) -> list[int]:
        """Ids as the embedded tokenizer gives them, with BOS (decoders) or [CLS] ... [SEP] (BERT)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    # ------------------------------------------------------------------ encoders
    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        import llama_cpp

        n_cls = llama_cpp.llama_model_n_cls_out(self.llm.model)
        if llama_cpp.llama_pooling_type(self.llm.ctx) != llama_cpp.LLAMA_POOLING_TYPE_RANK or n_cls < 1:
            raise NotImplementedError(f"{self.path.name} has no classifier head (pooling type is not RANK)")
        return self._pooled(texts, n_cls)                                   # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import llama_cpp

        if not self.encoder or llama_cpp.llama_pooling_type(self.llm.ctx) != llama_cpp.LLAMA_POOLING_TYPE_MEAN:
            raise NotImplementedError(f"{self.path.name} is not a mean-pooling embedding model")
        pooled = self._pooled(texts, self.llm.n_embd())                     # (N, H)
        return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)

    def labels(self) -> list[str]:
        """Class names stored in the file (`bert.classifier.output_labels`)."""
        import llama_cpp

        n = llama_cpp.llama_model_n_cls_out(self.llm.model)
        return [(llama_cpp.llama_model_cls_label(self.llm.model, i) or b"").decode() for i in range(n)]

    def _encode(self, text: str) -> list[int]:
        """[CLS] pieces [SEP], truncated like transformers' `truncation=True` (the [SEP] is kept)."""
        ids = self.tokenize(text)
        limit = min(ENCODER_MAX_TOKENS, self.n_ctx)
        return ids if len(ids) <= limit else ids[:limit - 1] + ids[-1:]

    def _pooled(self, texts: Sequence[str], width: int) -> np.ndarray:
        """One pooled row per text, several texts per llama_encode call (one sequence id each)."""
        import llama_cpp

        seqs = [self._encode(t) for t in texts]
        out = np.empty((len(seqs), width), dtype=np.float32)
        n_batch, n_seq_max = self.llm.n_batch, self.llm.context_params.n_seq_max
        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        try:
            i = 0
            while i < len(seqs):
                rows, n = [], 0
                while i < len(seqs) and n + len(seqs[i]) <= n_batch and len(rows) < n_seq_max:
                    for pos, tok in enumerate(seqs[i]):
                        batch.token[n], batch.pos[n], batch.n_seq_id[n] = tok, pos, 1
                        batch.seq_id[n][0], batch.logits[n] = len(rows), True
                        n += 1
                    rows.append(i)
                    i += 1
                batch.n_tokens = n
                memory = llama_cpp.llama_get_memory(self.llm.ctx)
                if memory:  # encoders usually have none
                    llama_cpp.llama_memory_clear(memory, True)
                if llama_cpp.llama_encode(self.llm.ctx, batch) != 0:
                    raise RuntimeError(f"llama_encode failed on {len(rows)} texts ({n} tokens)")
                for seq, row in enumerate(rows):
                    ptr = llama_cpp.llama_get_embeddings_seq(self.llm.ctx, seq)
                    out[row] = np.ctypeslib.as_array(ptr, shape=(width,))
        finally:
            llama_cpp.llama_batch_free(batch)
        return out

    def close(self) -> None:
        self.llm.close()
