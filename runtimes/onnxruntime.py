"""ONNX Runtime: explicit-KV-cache decoders and BERT encoders from a `model.onnx` folder. Never imports torch.

    backend = OnnxRuntimeBackend("out/onnx-int8")   # the artifact folder or its .onnx file
    backend.logits(ids)          # (1, T) -> (T, V), a full prefill from an empty cache
    backend.reset(); backend.forward(ids)   # decode loop: (V,) logits of the last position, KV cache kept
    backend.greedy(ids, 40)      # new token ids through the shared decode loop (runtimes/generation.py)
    backend.classify_logits(["a great film"])   # encoders with a classifier head
    backend.embed(["some text"])                # encoders without one: mean-pooled, normalised

The graph's input and output names are fixed here, in one place; the exporter imports them.
Sessions run with `session.intra_op.allow_spinning = "0"`: on two cores, spinning worker threads
cost a decode loop 1.7-2.7x under load.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from roots_edge.core.errors import ContextOverflowError
from roots_edge.formats.onnx import (ATTENTION_MASK, DATA_FILE, GENAI_CONFIG, INPUT_IDS, LAST_HIDDEN_STATE, LOGITS,
                                     MODEL_FILE, PAST_KEY, PAST_VALUE, POSITION_IDS, TOKEN_TYPE_IDS, decoder_names)
from roots_edge.formats.manifest import Manifest

from roots_edge.runtimes.base import (Backend, FolderMeta, FormatFacts, RuntimeLoadError, check_files_against_manifest, choose_context,
                   encode_batch, kv_cache_info, mean_pool, planned_memory)
from roots_edge.runtimes.contract import Contract, check_io
from roots_edge.runtimes.machine import INT8_KERNELS, int8_kernel_class

_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
_HINT = "re-export it with `roots-edge export --target onnx-...`"


_PAST = re.compile("|".join(re.escape(name).replace("%d", r"(\d+)") for name in (PAST_KEY, PAST_VALUE)))
_IDS, _FLOATS = ("tensor(int64)",), ("tensor(float)", "tensor(float16)")
_FIX = ("Export it again with roots-edge (`roots-edge export MODEL --target onnx-fp32`), or with optimum "
        "(`optimum-cli export onnx --task text-generation-with-past` for a decoder, `feature-extraction` or "
        "`text-classification` for an encoder).")


def graph_contract(inputs: Sequence[str], outputs: Sequence[str], shares_buffer: bool = False) -> Contract:
    """What this backend feeds a graph and reads from it. A graph that takes past keys / values is a decoder of
    as many layers as their highest index says; any other graph is an encoder, a classifier when it gives
    logits. `shares_buffer`: the shared-KV decode step (a GroupQueryAttention graph) feeds position_ids only
    when the graph takes them."""
    layers = 1 + max((int(m.group(m.lastindex)) for n in inputs if (m := _PAST.fullmatch(n))), default=-1)
    if layers:
        names_in, names_out = decoder_names(layers)
        optional = (POSITION_IDS,) if shares_buffer else ()
        return Contract("a decoder with KV cache", tuple(n for n in names_in if n not in optional),
                        tuple(names_out), optional, ((INPUT_IDS, _IDS), (ATTENTION_MASK, _IDS), (POSITION_IDS, _IDS),
                                                     *((n, _FLOATS) for n in names_in[3:])))
    if LOGITS in outputs:
        kind, head = "a classifier (an encoder whose output is logits)", LOGITS
    else:
        kind, head = "an embedding model (an encoder whose output is last_hidden_state; logits for a classifier)", \
            LAST_HIDDEN_STATE
    return Contract(kind, (INPUT_IDS, ATTENTION_MASK), (head,), (TOKEN_TYPE_IDS,),
                    ((INPUT_IDS, _IDS), (ATTENTION_MASK, _IDS), (TOKEN_TYPE_IDS, _IDS)))


def check_graph(model_file: Path, session, shares_buffer: bool) -> Contract:
    """The session's graph against `graph_contract`; a `RuntimeLoadError` naming what differs."""
    ports_in, ports_out = session.get_inputs(), session.get_outputs()
    names_in, names_out = [i.name for i in ports_in], [o.name for o in ports_out]
    contract = graph_contract(names_in, names_out, shares_buffer)
    fix = _FIX
    if POSITION_IDS in names_in and not contract.kind.startswith("a decoder"):
        fix = ("It looks like a decoder exported without its KV cache (position_ids but no past_key_values "
               "inputs): export it with past, e.g. `optimum-cli export onnx --task text-generation-with-past`, or "
               "with `roots-edge export MODEL --target onnx-fp32`.")
    check_io(model_file, contract, [[n] for n in names_in], [[n] for n in names_out],
             {p.name: p.type for p in (*ports_in, *ports_out)}, fix)
    return contract


def session_options(threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if int8_kernel_class() == "x86-saturating":
        # ORT then turns 8-bit s8 weights of u8 x s8 integer MatMuls into u8 (u8 x u8 kernels widen before
        # adding, no saturation). Only here: it converts them on VNNI CPUs too, where it halved MiniLM's speed.
        # Our own exports never need it (7-bit weights or MatMulNBits); older and foreign int8 files do.
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    return so


class Int8KernelWarning(RuntimeWarning):
    """An int8 artifact runs on a CPU whose int8 kernels compute differently from the CPU it was verified on."""


def int8_kernel_warning(manifest: Manifest | None, cpu: dict | None = None) -> str | None:
    """Why this int8 artifact's verification may not hold on this CPU, or None. Our exports since the
    saturation fix say `saturation_free` in their manifest; older ones were u8 x s8 with 8-bit weights,
    which x86 CPUs without VNNI add in saturating 16-bit pairs."""
    if manifest is None or manifest.precision != "int8" or manifest.quantization.get("saturation_free"):
        return None
    here = int8_kernel_class(cpu)
    verified_cpu = manifest.verification.cpu
    verified = verified_cpu.get("int8_kernels", "unknown")
    if here == verified or "x86-saturating" not in (here, verified):
        return None
    where = f"{verified_cpu.get('model', 'a CPU')} ({verified})" if verified_cpu else "a CPU the manifest does not name"
    head = (f"this int8 ONNX artifact was verified on {where}; this CPU's int8 kernels differ ({here}: "
            f"{INT8_KERNELS[here]}). ")
    fix = "Re-export it (`roots-edge export --target onnx-int8`) for the saturation-free form."
    if here == "x86-saturating":
        return head + ("roots-edge loads it with session.x64quantprecision=1, which keeps results correct here at "
                       "some speed cost; other ONNX Runtime hosts without that option compute wrong results on such "
                       "CPUs. " + fix)
    return head + ("Its verification ran on saturating kernels, so its recorded parity says little about the "
                   "results here. " + fix)


def _graph_name(folder: Path) -> str:
    """The graph a folder holds: `model.onnx`, else its only `.onnx` file (optimum's quantizer writes
    `model_quantized.onnx`). Several candidates and no `model.onnx`: an error naming them."""
    folder = Path(folder)
    graphs = sorted(p.name for p in folder.glob("*.onnx")) if folder.is_dir() else []
    if MODEL_FILE in graphs or len(graphs) <= 1:
        return graphs[0] if len(graphs) == 1 else MODEL_FILE
    raise RuntimeLoadError(f"{folder} holds {len(graphs)} ONNX graphs ({', '.join(graphs)}) and no {MODEL_FILE}: "
                           f"pass the one to load, e.g. {folder / graphs[0]}")


def check_model_file(folder: Path, name: str = MODEL_FILE) -> Path:
    """`folder/model.onnx`, or a `RuntimeLoadError` saying what is missing or damaged."""
    folder = Path(folder)
    path = folder / name
    if not folder.is_dir():
        raise RuntimeLoadError(f"{folder} is not a folder; an ONNX artifact is a folder holding {MODEL_FILE}")
    if not path.is_file():
        raise RuntimeLoadError(f"{folder} has no {name}: it is not an ONNX artifact; {_HINT}")
    if path.stat().st_size == 0:
        raise RuntimeLoadError(f"{path} is empty (0 bytes); {_HINT}")
    check_files_against_manifest(folder, _HINT)
    return path


def _shares_buffer(folder: Path) -> bool:
    """Whether the folder's genai_config.json declares past and present KV as one shared buffer (a
    GroupQueryAttention graph: our exports since revision 4, onnxruntime-genai's model builder)."""
    import json

    try:
        config = json.loads((folder / GENAI_CONFIG).read_text())
        return config["search"]["past_present_share_buffer"] is True
    except (OSError, ValueError, KeyError, TypeError):
        return False


class OnnxRuntimeBackend(Backend, format="onnx"):
    facts = FormatFacts(module="onnxruntime", suffix=".onnx", markers=("*.onnx",),
                        weights=("*.onnx", "*.onnx_data", "*.onnx.data"), libraries=("onnxruntime", "onnx"),
                        extra="onnx", run_extra="run-onnx", distribution="onnxruntime", version_key="onnxruntime")
    """One `onnxruntime.InferenceSession` over an artifact folder written by the ONNX exporter."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, *,
                 context: int | None = None, exact: bool = False):
        """`context`: the tokens a decoder may hold (the cache grows as they come); `exact` changes nothing
        here: the KV cache has the graph's own float type."""
        import onnxruntime as ort

        from roots_edge.runtimes.devices import place

        path = Path(path)
        self.folder = path.parent if path.suffix == ".onnx" else path
        model_file = check_model_file(self.folder, path.name if path.suffix == ".onnx" else _graph_name(self.folder))
        self.model_path = model_file
        self.placement = place("onnxruntime", device)
        providers = list(dict.fromkeys([self.placement.setting, "CPUExecutionProvider"]))
        planned_memory(self.folder, [model_file, self.folder / DATA_FILE], context, 4)
        try:
            self.session = ort.InferenceSession(str(model_file), session_options(threads), providers=providers)
        except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph, ... for one meaning
            raise RuntimeLoadError(f"ONNX Runtime cannot load {model_file}: {_first_line(exc)}. The file (or its "
                                   f"{DATA_FILE}) may be truncated or corrupt; {_HINT}") from None
        shares_buffer = self.placement.device == "cpu" and _shares_buffer(self.folder)
        contract = check_graph(model_file, self.session, shares_buffer)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.weight_bytes = sum(p.stat().st_size for p in (model_file, self.folder / DATA_FILE) if p.is_file())
        self.num_layers = sum(1 for name in contract.inputs if _PAST.fullmatch(name)) // 2   # a key and a value each
        meta = FolderMeta(self.folder, "causal-lm" if self.num_layers else "classification" if LOGITS in self.outputs
                          else "embedding")
        self.task = meta.task
        self.manifest, self.tok, self.eos_ids = meta.manifest, meta.tok, meta.eos_ids
        self.bos_id, self.chat_template = meta.bos_id, meta.chat_template
        message = int8_kernel_warning(self.manifest)
        if message:
            warnings.warn(message, Int8KernelWarning, stacklevel=3)
        self.max_context, self.labels, self.pad_id = meta.context_length, meta.labels, meta.pad_id
        self.context_length = choose_context(context, self.max_context, self.folder) if self.num_layers \
            else self.max_context
        if self.num_layers:
            self._past_names = decoder_names(self.num_layers)[0][3:]
            self._decoder_outputs = decoder_names(self.num_layers)[1]
            past = self.inputs[PAST_KEY % 0]
            self.kv_heads, self.head_dim = int(past.shape[1]), int(past.shape[3])  # (B, kv_heads, past, head_dim)
            self.kv_dtype = _NUMPY[past.type]
        self.cache: list[np.ndarray] | None = None
        # a GroupQueryAttention graph (genai_config says its past and present may share a buffer): the decode
        # loop writes each step's keys/values into one preallocated buffer per layer instead of copying the
        # whole cache into a new, longer array every token
        self.shared_kv = bool(self.num_layers) and shares_buffer
        self._binding, self._pos = None, 0     # the shared buffers' IO binding, and the tokens they hold

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
        feed = {INPUT_IDS: ids,                                                     # (1, T)
                ATTENTION_MASK: np.ones((1, past + n), dtype=np.int64),             # (1, P+T)
                POSITION_IDS: np.arange(past, past + n, dtype=np.int64)[None]}     # (1, T)
        feed.update(zip(self._past_names, cache))                                   # (1, kv, P, hd) each
        logits, *present = self.session.run(self._decoder_outputs, feed)            # by name: any order
        return np.asarray(logits[0], dtype=np.float32), present                    # (T, V), (1, kv, P+T, hd)

    def reset(self) -> None:
        """Forget the KV cache: the next `forward` starts at position 0."""
        self._require_decoder()
        if self.shared_kv:
            self._pos = 0        # the buffers stay: positions past `_pos` are never read
            return
        self.cache = self.empty_cache()

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """Append ids to the cached sequence; (V,) float32 logits of the last position."""
        ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        if self.shared_kv:
            return self._shared_step(ids)
        if self.cache is None:
            self.reset()
        logits, self.cache = self.decode_step(ids, self.cache)
        return logits[-1]                                                           # (V,)

    def _shared_step(self, ids: np.ndarray) -> np.ndarray:
        """`forward` over one (1, kv, context, hd) buffer per key / value, bound as both the layer's past and its
        present: GroupQueryAttention writes the new positions in place (`seqlens_k` tells it where)."""
        if self._binding is None:
            import onnxruntime as ort

            binding = self.session.io_binding()
            present = decoder_names(self.num_layers)[1][1:]                        # in the order of the past
            for past_name, present_name in zip(self._past_names, present):
                buffer = ort.OrtValue.ortvalue_from_numpy(                          # lazily committed zeros
                    np.zeros((1, self.kv_heads, self.context_length, self.head_dim), self.kv_dtype))
                binding.bind_ortvalue_input(past_name, buffer)
                binding.bind_ortvalue_output(present_name, buffer)
            self._binding = binding
        past, n = self._pos, ids.shape[1]
        if past + n > self.context_length:
            raise ContextOverflowError(f"{past} + {n} tokens do not fit the context of {self.context_length} this "
                                       "model was opened with; open it with a larger context")
        binding = self._binding
        binding.bind_output(LOGITS)                     # a fresh (1, T, V) array: T changes between calls
        binding.bind_cpu_input(INPUT_IDS, ids)                                                   # (1, T)
        binding.bind_cpu_input(ATTENTION_MASK, np.ones((1, past + n), dtype=np.int64))           # (1, P+T)
        if POSITION_IDS in self.inputs:
            binding.bind_cpu_input(POSITION_IDS, np.arange(past, past + n, dtype=np.int64)[None])  # (1, T)
        self.session.run_with_iobinding(binding)
        self._pos = past + n
        # outputs come in binding order: the caches, then the logits (re-bound under the same name each call)
        return np.asarray(binding.get_outputs()[-1].numpy()[0, -1], dtype=np.float32)           # (V,)

    def logits(self, input_ids) -> np.ndarray:
        ids = np.asarray(input_ids, dtype=np.int64).reshape(1, -1)                  # (1, T)
        self._require_decoder()
        return self.decode_step(ids, self.empty_cache())[0]                         # (T, V)

    # ------------------------------------------------------------------ encoders
    def _encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        ids, mask = encode_batch(self._tokenizer(), texts, self.pad_id)              # (B, T) each
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in self.inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)                                     # (B, T)
        return feed

    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.task != "classification":
            raise NotImplementedError(f"{self.folder} has no classifier head (outputs {self.outputs})")
        return np.asarray(self.session.run([LOGITS], self._encode(texts))[0], dtype=np.float32)   # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if LAST_HIDDEN_STATE not in self.outputs:
            raise NotImplementedError(f"{self.folder} has no {LAST_HIDDEN_STATE} output (outputs {self.outputs})")
        feed = self._encode(texts)
        hidden = self.session.run([LAST_HIDDEN_STATE], feed)[0]                          # (N, T, C)
        return mean_pool(np.asarray(hidden, dtype=np.float32), feed[ATTENTION_MASK])    # (N, C)

    # ------------------------------------------------------------------ text and housekeeping
    def info(self) -> dict:
        return {"format": "onnx", "precision": self.manifest.precision if self.manifest else "unknown",
                "backend": "onnxruntime", "device": self.placement.device, "setting": self.placement.setting,
                "file_size": self.weight_bytes, "context_length": self.context_length,
                "max_context": self.max_context, "task": self.task, "labels": self.labels,
                **({"kv_cache": kv_cache_info(self.num_layers, self.kv_heads, self.head_dim, self.context_length,
                                              np.dtype(self.kv_dtype).name, np.dtype(self.kv_dtype).itemsize)}
                   if self.num_layers else {})}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
