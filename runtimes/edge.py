"""`EdgeModel`: the same verbs over every backend (generate, classify, embed, logits, tokenize, info)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from roots_edge.core.errors import TaskError

from roots_edge.runtimes.base import check_text as _check_text
from roots_edge.runtimes.generation import Outcome, finite, generate_ids, stream_text
from roots_edge.runtimes.sampling import GenerationConfig

class _StreamSession:
    """The backend as one stream sees it. Each step takes the model's lock for itself only, so a paused stream
    blocks nobody; when another call used the backend since this stream's last step (its KV cache is then
    someone else's), the stream's own tokens are fed again before the next one."""

    def __init__(self, model: "EdgeModel"):
        self.model, self.backend, self.fed = model, model.backend, []

    def __getattr__(self, name):            # eos_ids, context_length, max_context, ...
        return getattr(self.backend, name)

    def reset(self) -> None:
        with self.model._lock:
            self.backend.reset()
            self.fed, self.model._owner = [], self

    def forward(self, ids: np.ndarray) -> np.ndarray:
        with self.model._lock:
            if self.model._owner is not self:
                self.backend.reset()
                if self.fed:
                    self.backend.forward(np.asarray(self.fed, dtype=np.int64))
                self.model._owner = self
            logits = self.backend.forward(ids)
            self.fed.extend(int(i) for i in np.asarray(ids).reshape(-1))
            return logits

    def tokenize(self, text: str) -> list[int]:
        with self.model._lock:
            return self.backend.tokenize(text)

    def detokenize(self, ids: list[int]) -> str:
        with self.model._lock:
            return self.backend.detokenize(ids)


class TextStream:
    """Text pieces as they decode; `outcome` (a `generation.Outcome`) fills as they come and is final once the
    stream ends: why it stopped, the token counts, the timings."""

    def __init__(self, pieces: Iterator[str], outcome: Outcome):
        self._pieces, self.outcome = pieces, outcome

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


class EdgeModel:
    """A loaded artifact, safe to share between threads.

    Every call but a stream (generate and chat with `stream=False`, generate_ids, logits, classify, embed,
    tokenize) runs whole under the model's lock, straight on the backend, so it gives exactly the answer it
    gives alone, whatever other threads do; calls wait for each other (load one model per thread for
    parallel work).

    A stream (`stream=True`) takes the lock for each step only, so a paused stream blocks nobody. The backend
    holds one KV state, though: when another call ran between two steps, the stream feeds its prompt and
    tokens again (a prefill each time), and since a batched prefill rounds differently from step-by-step
    decoding, its text can differ from the text it gives alone where two tokens score nearly the same. One KV
    state per session (see ARCHITECTURE.md, "Session") is what will make streams exact too."""

    def __init__(self, backend, path: Path):
        self.backend = backend
        self.path = Path(path)
        self._lock = threading.Lock()
        self._owner = None      # the stream whose tokens the backend's KV cache holds, if any


    def _require(self, task: str, verb: str) -> None:
        have = getattr(self.backend, "task", None)
        if have is None or have == task:
            return
        kind = {"causal-lm": "a text generator (causal LM)", "classification": "a classifier",
                "embedding": "an embedding model"}.get(have, f"a {have} model")
        use = {"causal-lm": "run / generate()", "classification": "predict / classify()",
               "embedding": "embed()"}.get(have, "another verb")
        hint = "" if task == "causal-lm" else "; a classifier comes from `roots-edge finetune MODEL --data rows.csv`"
        raise TaskError(f"{self.path} is {kind}: it cannot {verb} (use {use}){hint}")

    # ------------------------------------------------------------------ text generation
    def generate(self, prompt: str, max_new_tokens: int = 64, *, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (), truncate: bool = False,
                 stream: bool = False, details: bool = False):
        """The continuation of `prompt` (a str), or with `stream=True` an iterator of text pieces (a `TextStream`:
        its `outcome` says, once it is done, why it stopped). With `details=True` (not streaming): a dict of
        `text`, `finish_reason` ("stop", "length" or "context"), `prompt_tokens`, `completion_tokens`, timings
        and `tokens_per_second`."""
        self._require("causal-lm", "generate")
        _check_text(prompt)
        cfg = GenerationConfig(max_new_tokens, temperature, top_k, top_p, seed, tuple(stop), truncate)
        if stream:
            return self._stream(prompt, cfg)
        if not details:
            return self._whole(prompt, cfg)
        outcome = Outcome()
        text = self._whole(prompt, cfg, outcome)
        return {"text": text, **outcome.to_dict()}

    def chat(self, messages, max_new_tokens: int = 256, *, chat_template: str | None = None, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = (),
             stream: bool = False):
        """The model's reply to `messages` ([{"role": "system" | "user" | "assistant" | "tool", "content": ...}],
        or one user text) under its own chat template (or `chat_template`, a Jinja string), ending at its
        end-of-turn tokens. A str, or with `stream=True` an iterator of text pieces."""
        from roots_edge.runtimes.chat import check_messages, no_template_error, render

        self._require("causal-lm", "chat")
        facts = self.backend.chat_facts()
        template = chat_template or facts.template
        if not template:
            raise no_template_error(self.path)
        prompt = render(template, check_messages(messages), bos_token=facts.bos, eos_token=facts.eos)
        ids = self.tokenize(prompt)
        if len(ids) > 1 and facts.bos_id is not None and ids[0] == ids[1] == facts.bos_id:
            ids = ids[1:]                      # the template wrote BOS and the tokenizer added another
        cfg = GenerationConfig(max_new_tokens, temperature, top_k, top_p, seed, tuple(stop), stop_ids=facts.stop_ids)
        return self._stream(ids, cfg) if stream else self._whole(ids, cfg)

    def _stream(self, prompt: str | list[int], cfg: GenerationConfig) -> "TextStream":
        outcome = Outcome()
        return TextStream(stream_text(_StreamSession(self), prompt, cfg, outcome), outcome)

    def _whole(self, prompt: str | list[int], cfg: GenerationConfig, outcome: Outcome | None = None) -> str:
        """The whole text under the lock, straight on the backend (its KV cache is this call's until it ends)."""
        with self._lock:
            self._owner = None        # a paused stream feeds its own tokens again at its next step
            return "".join(stream_text(self.backend, prompt, cfg, outcome))

    def generate_ids(self, ids: Sequence[int], max_new_tokens: int = 64, **kw) -> list[int]:
        self._require("causal-lm", "generate")
        cfg = GenerationConfig(max_new_tokens, **kw)
        with self._lock:
            self._owner = None
            return list(generate_ids(self.backend, list(map(int, ids)), cfg))

    # ------------------------------------------------------------------ encoders and raw access
    def classify(self, texts: str | Sequence[str]):
        """{"label", "score", "scores"} per text (batched)."""
        self._require("classification", "classify")
        single = isinstance(texts, str)
        batch = [_check_text(t) for t in ([texts] if single else texts)]
        with self._lock:
            logits = finite(np.asarray(self.backend.classify_logits(batch), dtype=np.float64), self.backend,
                            "class scores")   # (N, C)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        labels = self.backend.labels
        out = [{"label": labels[int(p.argmax())], "score": float(p.max()),
                "scores": {lab: float(x) for lab, x in zip(labels, p)}} for p in probs]
        return out[0] if single else out

    def embed(self, texts: str | Sequence[str]) -> np.ndarray:
        single = isinstance(texts, str)
        batch = [_check_text(t) for t in ([texts] if single else texts)]
        with self._lock:
            try:
                out = self.backend.embed(batch)
            except NotImplementedError as exc:      # a classifier exported with its logits only, a decoder
                raise TaskError(f"{self.path} cannot embed text: {exc}; export the base encoder (without a "
                                f"classification head) for embeddings") from None
            out = finite(np.asarray(out, dtype=np.float32), self.backend, "embeddings")
        return out[0] if single else out

    def logits(self, text_or_ids) -> np.ndarray:
        """(T, V) logits of a full prefill."""
        self._require("causal-lm", "give next-token logits")
        ids = self.tokenize(text_or_ids) if isinstance(text_or_ids, str) else list(text_or_ids)
        with self._lock:
            self._owner = None
            return np.asarray(self.backend.logits(np.asarray([ids], dtype=np.int64)), dtype=np.float32)

    # under the lock too: encoders' batch encoding switches truncation on the one shared tokenizer
    def tokenize(self, text: str) -> list[int]:
        text = _check_text(text)
        with self._lock:
            return self.backend.tokenize(text)

    def detokenize(self, ids: Sequence[int]) -> str:
        ids = list(map(int, ids))
        with self._lock:
            return self.backend.detokenize(ids)

    def info(self) -> dict:
        """What the backend reports, plus a plain note when the model was opened with less context than its
        file declares (a GGUF header may claim 2^31-1 tokens: it opens at the default, by design)."""
        info = {"path": str(self.path), **self.backend.info()}
        opened, declared = info.get("context_length"), info.get("max_context")
        if opened and declared and opened < declared:
            info["context_note"] = (f"opened with {opened:,} tokens of context of the {declared:,} the model file "
                                    f"declares; pass context=N (CLI: --context N) for more, at the memory it costs")
        return info

    def __repr__(self) -> str:
        i = self.backend.info()
        return f"EdgeModel({i.get('format')}, {i.get('precision')}, device={i.get('device')}, path={str(self.path)!r})"
