"""The runtime seam: one `Backend` subclass per runtime library, all with the same verbs.

Never imports torch. A backend registers the artifact formats it opens where it is defined
(`class OnnxRuntimeBackend(Backend, format="onnx")`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from roots_edge.core.errors import RuntimeLoadError, TextInputError
from roots_edge.formats.manifest import Manifest
from roots_edge.core.paths import home, sha256_file, write_text_atomic
from roots_edge.core.text import check_unicode

from roots_edge.runtimes.chat import folder_template

ENCODER_MAX_TOKENS = 256   # truncation for classification / embedding inputs, the same on every backend


def load_tokenizer(folder: Path):
    """The artifact's `tokenizer.json` as a `tokenizers.Tokenizer` (no transformers, no torch)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise RuntimeLoadError(f"{folder} has no tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:     # tokenizers raises a bare Exception for any unreadable file
        raise RuntimeLoadError(f"{path} is not a tokenizer the tokenizers library can read "
                               f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}); export "
                               f"the artifact again or copy it again") from None
    return plain_tokenizer(tok)


def plain_tokenizer(tok):
    """`tok` without the truncation and padding some tokenizer.json files carry: callers choose."""
    tok.no_truncation()
    tok.no_padding()
    return tok


def encode_batch(tokenizer, texts: Sequence[str], pad_id: int, max_length: int = ENCODER_MAX_TOKENS):
    """(input_ids, attention_mask) as int64 arrays, right-padded to the longest text, truncated."""
    tokenizer.enable_truncation(max_length)  # keeps the special tokens, as transformers does
    try:
        ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    finally:
        tokenizer.no_truncation()
    width = max(len(i) for i in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return input_ids, mask


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the last hidden states over real tokens, L2-normalised: (B, T, C) -> (B, C)."""
    m = mask[..., None].astype(hidden.dtype)
    pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


VERIFY_ENV = "ROOTS_EDGE_VERIFY"
VERIFY_MODES = ("changed", "always", "off")
STAMPS_KEPT = 2000


def _stamps_path() -> Path:
    return home() / "verified-files.json"


def _read_stamps() -> dict:
    try:
        stamps = json.loads(_stamps_path().read_text())
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamps(stamps: dict) -> None:
    try:
        kept = dict(list(stamps.items())[-STAMPS_KEPT:])
        write_text_atomic(_stamps_path(), json.dumps(kept))
    except OSError:
        pass            # a read-only cache only costs the next load a hash


def check_files_against_manifest(folder: Path, hint: str) -> None:
    """Every file the export's manifest lists must still be the file that was exported and verified: present,
    of its recorded size, and of its recorded sha256 (a weight overwritten in place keeps its size). Hashing
    costs ~0.16 s per 250 MB here, several times that on a Pi, so by default (`ROOTS_EDGE_VERIFY=changed`) a file
    is hashed once and then again only when its size, mtime or inode changes (stamps in the cache folder);
    `always` hashes on every load, `off` checks sizes only."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    if manifest is None:
        return
    mode = os.environ.get(VERIFY_ENV, "changed")
    if mode not in VERIFY_MODES:
        raise RuntimeLoadError(f"{VERIFY_ENV}={mode!r}: expected one of {', '.join(VERIFY_MODES)}")
    stamps = _read_stamps() if mode == "changed" else {}
    changed = False
    for entry in manifest.files:
        f = folder / entry.name
        if not f.is_file():
            raise RuntimeLoadError(f"{f} is missing; {folder / 'manifest.json'} lists it as part of the artifact. "
                                   f"{hint}")
        st = f.stat()
        if st.st_size != entry.bytes:
            raise RuntimeLoadError(f"{f} has {st.st_size:,} bytes; the manifest records {entry.bytes:,}: "
                                   f"the file is truncated or was replaced; {hint}")
        if mode == "off" or not entry.sha256:
            continue
        key, stamp = f"{st.st_dev}:{st.st_ino}", [st.st_size, st.st_mtime_ns, entry.sha256]
        if stamps.get(key) == stamp:
            continue
        if sha256_file(f) != entry.sha256:
            raise RuntimeLoadError(f"{f} is not the file that was exported: its sha256 differs from the one in "
                                   f"{folder / 'manifest.json'} (the file was corrupted or overwritten in place); "
                                   f"{hint}")
        stamps.pop(key, None)
        stamps[key] = stamp
        changed = True
    if changed and mode == "changed":
        _write_stamps(stamps)


MAX_TEXT_CHARS = 100_000


def check_text(text) -> str:
    """`text` if a model can run it: a str of valid Unicode, not blank, at most MAX_TEXT_CHARS characters."""
    if not isinstance(text, str):
        raise TextInputError(f"expected a string, got {type(text).__name__}")
    check_unicode(text)
    if not text.strip():
        raise TextInputError("the text is empty; give at least one non-space character")
    if len(text) > MAX_TEXT_CHARS:
        raise TextInputError(f"the text has {len(text):,} characters, more than {MAX_TEXT_CHARS:,}; split it")
    return text


def artifact_task(manifest: Manifest | None, found: str, where: Path) -> str:
    """The task of an artifact: what its manifest records (the exporter verified it as that); the model
    file's own structure (`found`: KV-cache inputs, a logits output, a GGUF pooling type) only speaks for
    artifacts exported elsewhere (Optimum's, a community GGUF). A manifest that disagrees with its model
    file means the folder was mixed up."""
    recorded = manifest.source.task if manifest is not None else ""
    if recorded and recorded != found:
        raise RuntimeLoadError(f"{where}: manifest.json says the model is a {recorded} model but the model file is "
                               f"a {found} model; the folder holds files of two different exports. Export it again.")
    return recorded or found


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config: dict, where: Path) -> int:
    """The longest sequence the model was built for, from config.json (no guessing: a wrong guess lets a
    model run on positions it never learned)."""
    for key in CONTEXT_KEYS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    raise RuntimeLoadError(f"{where}/config.json gives no context length ({' / '.join(CONTEXT_KEYS)}); copy the "
                           "source model's config.json beside the model file")


class FolderMeta:
    """What a backend reads beside its model file, read once: config, manifest, tokenizer, and the facts
    derived from them (task, EOS and BOS ids, context length, labels, padding id, chat template). `found` is
    the task the model file's structure shows (`artifact_task`)."""

    def __init__(self, folder: Path, found: str):
        folder = Path(folder)
        self.config = read_json(folder / "config.json")
        self.manifest = Manifest.read(folder)        # None: not exported by roots-edge
        self.task = task = artifact_task(self.manifest, found, folder)
        self.tok = load_tokenizer(folder) if (folder / "tokenizer.json").is_file() else None
        generation = read_json(folder / "generation_config.json")
        eos = generation.get("eos_token_id", self.config.get("eos_token_id"))
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.context_length = context_length(self.config, folder)
        id2label = self.config.get("id2label") or {}
        self.labels = [id2label[k] for k in sorted(id2label, key=int)] if task == "classification" else []
        self.pad_id = self._pad_id(folder)
        bos = generation.get("bos_token_id", self.config.get("bos_token_id"))
        self.bos_id = bos if isinstance(bos, int) else None
        self.chat_template = folder_template(folder)
        vocab = self.tok.get_vocab_size() if self.tok is not None else None
        for name, ids in (("eos_token_id", self.eos_ids), ("bos_token_id", {self.bos_id} - {None})):
            bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or i < 0
                   or (vocab is not None and i >= vocab)]
            if bad:
                within = f"a token of the tokenizer's {vocab:,}-token vocabulary" if vocab else "a token id"
                raise RuntimeLoadError(f"{folder}: {name} {bad[0]!r} (config.json / generation_config.json) is not "
                                       f"{within}; the artifact is damaged: export it again")

    def _pad_id(self, folder: Path) -> int:
        """config.json's pad id (a Llama classifier finds its last token by it), else the tokenizer's."""
        pad = self.config.get("pad_token_id")
        if pad is None and self.tok is not None:
            token = read_json(folder / "tokenizer_config.json").get("pad_token")
            pad = self.tok.token_to_id(token) if isinstance(token, str) else None
        return int(pad or 0)


DEFAULT_CONTEXT = 2048  # tokens a decoder is opened for unless asked: KV memory sized for use, not the maximum


def choose_context(requested: int | None, maximum: int, where) -> int:
    """The context a decoder is opened with: `requested` (checked against the model's trained maximum), else
    the smaller of DEFAULT_CONTEXT and that maximum."""
    if requested is None:
        return min(DEFAULT_CONTEXT, maximum)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise RuntimeLoadError(f"context must be a positive number of tokens; got {requested!r}")
    if requested > maximum:
        raise RuntimeLoadError(f"context {requested:,} is more than {where} was trained for ({maximum:,} tokens); "
                               f"pass a context of at most {maximum:,}")
    return requested


def kv_cache_info(layers: int, kv_heads: int, head_dim: int, context: int, kind: str, bytes_per_value: float,
                  sliding: tuple[int, int] = (0, 0)) -> dict:
    """What `context` tokens of keys and values take: {"type", "tokens", "bytes", "bytes_per_token"}.
    `sliding`: (layers that attend to a window only, tokens each of them keeps) where a runtime trims them."""
    per_layer_token = 2 * kv_heads * head_dim * bytes_per_value
    sliding_layers, window_cells = sliding
    total = per_layer_token * ((layers - sliding_layers) * context + sliding_layers * min(window_cells, context))
    return {"type": kind, "tokens": context, "bytes": int(total), "bytes_per_token": int(per_layer_token * layers),
            **({"sliding_layers": sliding_layers, "sliding_tokens": min(window_cells, context)}
               if sliding_layers else {})}


RUNTIME_OVERHEAD = 50 * 2**20   # the interpreter and runtime libraries, beyond weights and KV cache


def _size(text: str) -> int:
    """`123456`, `512M`, `2G` -> bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def available_memory() -> int | None:
    """Bytes this process can still use: `ROOTS_EDGE_AVAILABLE_MEMORY` (e.g. `1G`, to plan for a smaller device),
    else the smaller of MemAvailable and the cgroup's remaining limit (Linux); None where neither is known."""
    override = os.environ.get("ROOTS_EDGE_AVAILABLE_MEMORY")
    if override:
        try:
            return _size(override)
        except ValueError:
            raise RuntimeLoadError(f"ROOTS_EDGE_AVAILABLE_MEMORY={override!r} is not a size; use bytes or 512M, "
                                   f"2G") from None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def kv_bytes_per_token(config: dict, bytes_per_value: float) -> int:
    """Keys and values one token takes in every layer, from a Hugging Face config (0 when it does not say)."""
    layers, heads = config.get("num_hidden_layers"), config.get("num_attention_heads")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (config.get("hidden_size", 0) // heads if heads else 0)
    if not all(isinstance(v, int) and v > 0 for v in (layers, kv_heads, head_dim)):
        return 0
    return int(2 * layers * kv_heads * head_dim * bytes_per_value)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def check_memory(where, weight_bytes: int, kv_bytes: int = 0, context: int | None = None) -> None:
    """Refuse, before loading, a model that will not fit in the memory left (say what it needs and what to do)."""
    available = available_memory()
    need = weight_bytes + kv_bytes + RUNTIME_OVERHEAD
    if available is None or need <= available:
        return
    at = f" at a context of {context:,} tokens" if context else ""
    kv = f" + KV cache {_mb(kv_bytes)}" if kv_bytes else ""
    fix = "pass a smaller --context, " if kv_bytes else ""
    raise RuntimeLoadError(f"{where} needs about {_mb(need)}{at} (weights {_mb(weight_bytes)}{kv} + ~{_mb(RUNTIME_OVERHEAD)}"
                           f" runtime) but only {_mb(available)} is available; {fix}close other programs, or use a "
                           f"smaller export (gguf-q4, onnx-int4, openvino-int4)")


def planned_memory(folder: Path, weight_files: Sequence[Path], context: int | None, kv_bytes_per_value: float) -> None:
    """`check_memory` for a folder artifact (ONNX, OpenVINO), before its session is built: the weight files, and
    for a decoder the KV cache at the context it will be opened with (config.json gives the shapes)."""
    config = read_json(Path(folder) / "config.json")
    weights = sum(p.stat().st_size for p in weight_files if p.is_file())
    per_token = kv_bytes_per_token(config, kv_bytes_per_value) if "num_key_value_heads" in config or \
        config.get("model_type") not in ("bert", "roberta", "xlm-roberta", "distilbert") else 0
    maximum = next((config[k] for k in CONTEXT_KEYS if isinstance(config.get(k), int) and config[k] > 0), None)
    ctx = (context if isinstance(context, int) and context > 0 else min(DEFAULT_CONTEXT, maximum or DEFAULT_CONTEXT)) \
        if per_token else None
    check_memory(folder, weights, per_token * (ctx or 0), ctx)


def read_json(path: Path) -> dict:
    """A JSON object beside the model ({} when the file is absent); a damaged file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:                      # JSONDecodeError, UnicodeDecodeError
        raise RuntimeLoadError(f"{path} is not valid JSON ({str(exc)[:120]}); the artifact is damaged: export it "
                               f"again or copy it again") from None
    if not isinstance(data, dict):
        raise RuntimeLoadError(f"{path} holds a JSON {type(data).__name__}, not an object; the artifact is damaged:"
                               f" export it again or copy it again")
    return data


@dataclass(frozen=True)
class FormatFacts:
    """What the rest of the package knows about one artifact format, declared once by its backend class: how a
    file or folder of it is recognised, which files hold its weights, and what a machine needs to run it."""

    module: str                      # roots_edge.runtimes.<module>
    suffix: str | None               # a single file of this format (".onnx"); None: recognised by content
    markers: tuple[str, ...]         # globs in an artifact folder that mean this format, strongest first
    weights: tuple[str, ...]         # globs of the files a decoder reads per token (sizes, bundles, bits/weight)
    libraries: tuple[str, ...]       # modules its backend imports (a missing one: "pip install roots-edge[extra]")
    extra: str                       # the pyproject extra that installs them
    run_extra: str | None = None     # the extra a device bundle installs to run it (no torch)
    distribution: str | None = None  # the runtime library's distribution on the package index
    version_key: str | None = None   # its key in roots_edge.core.versions.versions()

    def weight_files(self, path: Path) -> list[Path]:
        p = Path(path)
        return [p] if p.is_file() else sorted({f for pattern in self.weights for f in p.glob(pattern)})

    def weight_bytes(self, path: Path) -> int:
        return sum(f.stat().st_size for f in self.weight_files(path))


class Backend:
    """The contract every backend keeps: what `EdgeModel`, the decode loop and the benchmark call, and nothing
    else (tests/runtimes/test_contract.py runs every backend against it).

    Set when it loads (`ATTRIBUTES`):
    - `task`: "causal-lm", "classification" or "embedding"; `labels`: class names (classifiers), else [];
    - `eos_ids`: the ids that end a generation (decoders; may be empty for encoders);
    - `context_length`: tokens the opened model holds; `max_context`: tokens its file declares (>= the first).

    Verbs:
    - `reset()`, then `forward(ids)`: (T,) ids fed after the KV cache -> (V,) float32 logits of the last position
      (decoders: the one decode loop, runtimes/generation.py, drives these);
    - `logits(input_ids)`: (1, T) int64 -> (T, V) float32, a full prefill (decoders);
    - `classify_logits(texts)`: (N, C) class logits (classifiers);
    - `embed(texts)`: (N, C) mean-pooled, normalised embeddings (encoders);
    - `tokenize(text)` / `detokenize(ids)` / `chat_facts()`: the artifact's own tokenizer and chat template;
    - `info()`: a dict with at least `INFO_KEYS`.
    A verb the model's task lacks raises NotImplementedError (EdgeModel turns that into a TaskError).
    """

    ATTRIBUTES: ClassVar[dict[str, type]] = {"task": str, "labels": list, "eos_ids": set, "context_length": int,
                                              "max_context": int}
    INFO_KEYS: ClassVar[tuple[str, ...]] = ("format", "precision", "backend", "device", "context_length",
                                            "max_context", "task", "labels")
    registry: ClassVar[dict[str, type["Backend"]]] = {}
    format: ClassVar[str]
    facts: ClassVar[FormatFacts]
    task: str
    labels: list[str]
    eos_ids: set[int]
    context_length: int
    max_context: int

    def __init_subclass__(cls, format: str, **kw):
        super().__init_subclass__(**kw)
        cls.format = format
        Backend.registry[format] = cls

    @classmethod
    def claims(cls, path: Path) -> bool:
        """Whether `path` (a file or an artifact folder) is of this format, from its name or its content."""
        if path.is_file():
            return cls.facts.suffix is not None and path.suffix == cls.facts.suffix
        return any(any(path.glob(marker)) for marker in cls.facts.markers)

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def forward(self, ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no classifier head")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} cannot embed")

    def greedy(self, input_ids, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        """Greedy continuation through the shared decode loop; the EOS is kept when it is produced."""
        from roots_edge.runtimes.generation import generate_ids
        from roots_edge.runtimes.sampling import GenerationConfig

        ids = [int(i) for i in np.asarray(input_ids).reshape(-1)]
        out = list(generate_ids(self, ids, GenerationConfig(max_new_tokens, ignore_eos=True)))
        if stop_at_eos:
            cut = next((i for i, t in enumerate(out) if t in self.eos_ids), None)
            out = out if cut is None else out[:cut + 1]
        return out

    # text: backends that ship a tokenizer.json share these; llama.cpp uses the one inside the GGUF
    tok = None

    def _tokenizer(self):
        if self.tok is None:
            raise RuntimeLoadError(f"{type(self).__name__}: the artifact has no tokenizer.json; texts cannot be encoded")
        return self.tok

    def tokenize(self, text: str) -> list[int]:
        return self._tokenizer().encode(text).ids

    def chat_facts(self):
        """The chat template and the special tokens around it (`runtimes.chat.ChatFacts`)."""
        from roots_edge.runtimes.chat import tokenizer_facts

        return tokenizer_facts(self._tokenizer(), getattr(self, "chat_template", None), getattr(self, "bos_id", None),
                               set(self.eos_ids))

    def detokenize(self, ids: list[int]) -> str:
        return self._tokenizer().decode(ids, skip_special_tokens=True)

    def info(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must describe itself (Backend.INFO_KEYS)")
