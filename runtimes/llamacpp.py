"""llama.cpp (through llama-cpp-python) over a GGUF artifact. Never imports torch.

    backend = LlamaCppBackend("artifacts/gguf-q4")        # the artifact folder or the .gguf file
    backend.logits(ids)            # decoders: (1, T) -> (T, V) float32, one full prefill
    backend.reset(); backend.forward(ids)   # decode loop: logits (V,) of the last position, KV cache kept
    backend.classify_logits(texts) # BERT classifiers (RANK pooling): (N, C)
    backend.embed(texts)           # BERT embedders (MEAN pooling): (N, H), L2-normalised
    backend.tokenize(text)         # ids from the tokenizer embedded in the file

Batches are built with llama.cpp's own C API (`llama_batch`, `llama_decode` / `llama_encode`), so
the decode loop asks for one row of logits per step and a prefill for exactly the rows it needs.
The KV cache is sized for the context asked for (`context=`, default 2048) in llama.cpp's own f16;
`exact=True` keeps it in f32 (the f16 cache alone moves logits by ~1e-2, too much for parity checks).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from roots_edge.core.errors import BackendError, ContextOverflowError
from roots_edge.formats.gguf import GGUF_MAGIC, find_gguf, precision_name, read_header
from roots_edge.core.capture import captured_stderr
from roots_edge.formats.manifest import Manifest

from roots_edge.runtimes.base import (DEFAULT_CONTEXT, ENCODER_MAX_TOKENS, Backend, FormatFacts, RuntimeLoadError, artifact_task,
                   check_files_against_manifest, check_memory, choose_context, kv_cache_info)

DECODE_BATCH = 512  # tokens per llama_decode call (llama.cpp's and llama-cpp-python's default batch)





# llama.cpp's default sliding-window layout where the file does not state one: in every run of N layers, all
# but the last attend to a window (src/models/gemma3.cpp: load_swa_pattern(ml, 6))
SLIDING_PATTERNS = {"gemma3": 6}


class LlamaCppBackend(Backend, format="gguf"):
    facts = FormatFacts(module="llamacpp", suffix=".gguf", markers=("*.gguf",), weights=("*.gguf",),
                        libraries=("llama_cpp", "gguf"), extra="gguf", run_extra="run-gguf",
                        distribution="llama-cpp-python", version_key="llama_cpp_python")

    @classmethod
    def claims(cls, path: Path) -> bool:
        if path.is_file():                 # any name: llama.cpp's files are known by their magic
            with path.open("rb") as f:
                return f.read(4) == GGUF_MAGIC
        return super().claims(path)

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, *,
                 context: int | None = None, exact: bool = False):
        """`context`: tokens the KV cache is sized for (default: `DEFAULT_CONTEXT`, at most the model's own);
        `exact`: an f32 KV cache (parity checks) instead of llama.cpp's f16 default."""
        import llama_cpp

        from roots_edge.runtimes.devices import place

        self.path = find_gguf(path)
        check_files_against_manifest(self.path.parent, "re-export the artifact or copy it again")
        self.header = read_header(self.path)
        self.encoder = self.header["architecture"] == "bert"
        self.max_context = self.header["context_length"] or DEFAULT_CONTEXT
        self.placement = place("llamacpp", device)
        self.kv_type = "f32" if exact else "f16"
        kv = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if exact else {}
        if self.encoder:   # a whole text in one (non-causal) batch
            ctx = batch = min(self.max_context, ENCODER_MAX_TOKENS * 8)
        else:
            ctx = choose_context(context, self.max_context, self.path.name)
            batch = min(ctx, DECODE_BATCH)
        h = self.header
        per_token = 2 * (h["layers"] or 0) * (h["kv_heads"] or 0) * (h["head_dim"] or 0) * (4 if exact else 2)
        check_memory(self.path, self.path.stat().st_size, 0 if self.encoder else per_token * ctx,
                     None if self.encoder else ctx)
        try:
            # swa_full=False: sliding-window layers keep only their window (+ one batch) of KV, as llama.cpp's own
            # tools do; llama-cpp-python asks for the full context there. Safe because this backend never rolls
            # the cache back to an earlier position, it only clears it.
            with captured_stderr() as log:   # llama.cpp notes (SWA cache sizes, ...) bypass verbose=False
                self.llm = llama_cpp.Llama(
                    str(self.path), n_gpu_layers=0 if self.placement.device == "cpu" else -1, n_ctx=ctx,
                    n_batch=batch, n_ubatch=batch, n_threads=threads, n_threads_batch=threads,
                    embedding=self.encoder, swa_full=False, verbose=False, **kv)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            tail = " ".join("".join(log).split()[-40:])
            raise RuntimeLoadError(f"llama.cpp could not load {self.path}: {exc}" + (f" ({tail})" if tail else "")) \
                from None
        model = self.llm.model
        self.n_ctx, self.n_batch = self.llm.n_ctx(), self.llm.n_batch
        self.n_vocab = self.llm.n_vocab()
        self.context_length = min(ctx, self.n_ctx)   # llama.cpp rounds n_ctx up (to 256) past what was asked
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            raw = self.llm.metadata.get(key)
            if raw is not None and not (raw.lstrip("-").isdigit() and 0 <= int(raw) < self.n_vocab):
                self.llm.close()
                raise RuntimeLoadError(f"{self.path}: {key} = {raw} is not a token of its {self.n_vocab:,}-token "
                                       f"vocabulary; the file is corrupt: re-export it")
        self.eos_ids = {t for t in (self.llm.token_eos(),) if 0 <= t < self.n_vocab}
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
        if self.encoder:
            raise NotImplementedError(f"{self.path.name} is an encoder; it has no KV cache to reset")
        self._clear()

    def _clear(self) -> None:
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
        self._clear()
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
        return self._tokenize(text.encode("utf-8"), add_bos=True)

    def _tokenize(self, data: bytes, add_bos: bool) -> list[int]:
        """llama.cpp's tokenizer into a buffer sized for the text (then for what it says it needs).
        llama-cpp-python's own `tokenize` allocates a token per position of the trained context on every call:
        8 GB and half a minute for a header that claims 2^31 tokens."""
        import llama_cpp

        vocab, size = llama_cpp.llama_model_get_vocab(self.llm.model), len(data) + 8
        for _ in range(2):
            buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, add_bos, True)
            if n >= 0:
                return list(buf[:n])
            size = -n
        raise BackendError(f"llama.cpp could not tokenize a text of {len(data):,} bytes with {self.path.name}")

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(list(ids), special=False).decode("utf-8", "replace")

    def chat_facts(self):
        """The header's chat template; end-of-turn tokens as llama.cpp's vocabulary holds them."""
        import llama_cpp

        from roots_edge.runtimes.chat import END_OF_TURN, ChatFacts

        def text(i: int) -> str:
            return self.llm.detokenize([i], special=True).decode("utf-8", "replace") if i >= 0 else ""

        turns = {t[0] for t in (self._tokenize(s.encode(), add_bos=False) for s in END_OF_TURN)
                 if len(t) == 1 and text(t[0]) in END_OF_TURN}
        eot = llama_cpp.llama_vocab_eot(llama_cpp.llama_model_get_vocab(self.llm.model))
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        return ChatFacts(self.header["chat_template"], text(bos), text(eos), bos if bos >= 0 else None,
                         frozenset(turns | self.eos_ids | ({eot} if eot >= 0 else set())))

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
            self._clear()
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
                "file_size": self.header["bytes"], "context_length": self.context_length,
                "max_context": self.max_context, "task": self.task, "labels": self.labels, "file": self.path.name,
                **({} if self.encoder else {"kv_cache": self._kv_cache()})}

    def _kv_cache(self) -> dict:
        """The KV cache llama.cpp allocates: n_ctx tokens (the context asked for, rounded up to 256) in full
        attention layers; in sliding-window layers the window plus one batch, rounded up to 256 cells
        (llama_kv_cache_iswa's sizing)."""
        h = self.header
        window, layers = h["sliding_window"], h["layers"]
        pattern = h["sliding_pattern"] or SLIDING_PATTERNS.get(h["architecture"], 0)
        sliding = sum(i % pattern < pattern - 1 for i in range(layers)) if window and pattern else 0
        return kv_cache_info(layers, h["kv_heads"], h["head_dim"], self.n_ctx, self.kv_type,
                             4 if self.kv_type == "f32" else 2, (sliding, -(-(window + self.n_batch) // 256) * 256))

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
