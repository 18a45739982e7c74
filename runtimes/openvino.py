"""OpenVINO runtime: stateful KV-cache decoders and encoders from an IR folder. Never imports torch.

    backend = OpenVinoBackend("out/openvino-int4")
    backend.logits(ids)          # (1, T) -> (T, V), a full prefill from an empty state
    backend.greedy(ids, 40)      # new token ids through the shared decode loop (runtimes/generation.py)
    backend.reset(); backend.forward(ids)   # the shared decode loop's primitives (runtimes.generation)

Compiled with f32 inference and an f32 KV cache: the CPU defaults (bf16 compute, u8 cache) drift from
the PyTorch reference, and greedy text diverges after a few dozen tokens.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np

from roots_edge.runtimes.base import (Backend, FolderMeta, FormatFacts, RuntimeLoadError, check_files_against_manifest, choose_context,
                   encode_batch, kv_cache_info, mean_pool, planned_memory)
from roots_edge.runtimes.contract import Contract, check_io

MODEL_XML = "openvino_model.xml"
PARITY_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
CPU_PARITY_CONFIG = {**PARITY_CONFIG, "KV_CACHE_PRECISION": "f32"}  # the CPU plugin's cache defaults to u8
_HINT = "re-export it with `roots-edge export --target openvino-...`"

# the names this backend feeds and reads (openvino-genai's, which optimum-intel writes too)
INPUT_IDS, ATTENTION_MASK, POSITION_IDS, BEAM_IDX = "input_ids", "attention_mask", "position_ids", "beam_idx"
TOKEN_TYPE_IDS, LOGITS, LAST_HIDDEN_STATE = "token_type_ids", "logits", "last_hidden_state"
_FIX = ("Export it again with roots-edge (`roots-edge export MODEL --target openvino-fp32`), or with optimum-intel "
        "(`optimum-cli export openvino`; decoders stateful, its default).")


def ir_contract(stateful: bool, outputs: set[str]) -> Contract:
    """What this backend feeds an IR and reads from it: a stateful decoder (the KV cache lives in the model's
    state), else an encoder, a classifier when it gives logits."""
    if stateful:
        return Contract("a stateful decoder", (INPUT_IDS, ATTENTION_MASK, POSITION_IDS, BEAM_IDX), (LOGITS,))
    if LOGITS in outputs:
        return Contract("a classifier (an encoder whose output is logits)", (INPUT_IDS, ATTENTION_MASK), (LOGITS,),
                        (TOKEN_TYPE_IDS,))
    return Contract("an embedding model (an encoder whose output is last_hidden_state; logits for a classifier)",
                    (INPUT_IDS, ATTENTION_MASK), (LAST_HIDDEN_STATE,), (TOKEN_TYPE_IDS,))


def check_ports(xml: Path, model, stateful: bool) -> Contract:
    """The IR's ports (each may carry several names) against `ir_contract`; a `RuntimeLoadError` naming what
    differs."""
    ins = [sorted(p.get_names(), key=lambda n: n != p.get_any_name()) for p in model.inputs]
    outs = [sorted(p.get_names(), key=lambda n: n != p.get_any_name()) for p in model.outputs]
    contract = ir_contract(stateful, {n for port in outs for n in port})
    fix = _FIX
    if not stateful and any(n.startswith("past_key_values") for port in ins for n in port):
        fix = ("It is a stateless decoder (its KV cache passed as inputs); roots-edge runs stateful IRs: export it "
               "with `roots-edge export MODEL --target openvino-fp32`, or with optimum-intel without "
               "--disable-stateful.")
    check_io(xml, contract, ins, outs, fix=fix)
    return contract


def check_ir(folder: Path, xml_name: str = MODEL_XML) -> tuple[Path, Path]:
    """(xml, bin) of an IR folder, or a `RuntimeLoadError` saying what is missing or damaged."""
    folder = Path(folder)
    xml = folder / xml_name
    weights = xml.with_suffix(".bin")
    if not folder.is_dir():
        raise RuntimeLoadError(f"{folder} is not a folder; an OpenVINO artifact is a folder holding {MODEL_XML}")
    if not xml.is_file():
        raise RuntimeLoadError(f"{folder} has no {xml_name}: it is not an OpenVINO IR artifact; {_HINT}")
    if not weights.is_file():
        raise RuntimeLoadError(f"{folder} has {xml_name} but no {weights.name} (the weights); {_HINT}")
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise RuntimeLoadError(f"{xml} is corrupt (not valid XML: {exc}); {_HINT}") from None
    if root.tag != "net":
        raise RuntimeLoadError(f"{xml} is XML but not an OpenVINO IR (root <{root.tag}>, expected <net>); {_HINT}")
    check_files_against_manifest(folder, _HINT)
    return xml, weights


class OpenVinoBackend(Backend, format="openvino"):
    facts = FormatFacts(module="openvino", suffix=".xml", markers=("openvino_model.xml",),
                        weights=("openvino_model.bin",), libraries=("openvino", "openvino_tokenizers"),
                        extra="openvino", run_extra="run-openvino", distribution="openvino", version_key="openvino")
    """One compiled model and one infer request over an IR folder written by the OpenVINO exporter."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, *,
                 context: int | None = None, exact: bool = False, config: dict | None = None):
        """`path`: the artifact folder (or its .xml); `device`: cpu, gpu or auto (see runtimes.devices);
        `context`: the tokens a decoder may hold (the state grows as they come); `exact`: an f32 KV cache
        instead of the CPU plugin's default (u8); `config` adds or overrides OpenVINO properties (e.g.
        {"INFERENCE_PRECISION_HINT": "bf16"})."""
        import openvino as ov

        from roots_edge.runtimes.devices import place

        path = Path(path)
        self.folder = path.parent if path.suffix == ".xml" else path
        xml, weights = check_ir(self.folder, path.name if path.suffix == ".xml" else MODEL_XML)
        self.placement = place("openvino", device)
        planned_memory(self.folder, [weights], context, 4 if exact else 1)
        core = ov.Core()
        try:
            model = core.read_model(str(xml), str(weights))
        except RuntimeError as exc:
            raise RuntimeLoadError(f"OpenVINO cannot read {xml}: {_first_line(exc)}. The .bin may be truncated "
                                   "or belong to another export; re-export the artifact.") from None
        self.stateful = bool(model.get_sinks())
        check_ports(xml, model, self.stateful)
        self.inputs = [n for p in model.inputs for n in p.get_names()]
        self.outputs = [n for p in model.outputs for n in p.get_names()]
        setting = self.placement.setting
        props = {**(CPU_PARITY_CONFIG if setting.startswith("CPU") and exact else PARITY_CONFIG),
                 **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {}), **(config or {})}
        try:
            self.compiled = core.compile_model(model, setting, props)
        except RuntimeError as exc:
            raise RuntimeLoadError(f"OpenVINO cannot compile {xml} for {setting}: {_first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.weight_bytes = weights.stat().st_size
        meta = FolderMeta(self.folder, "causal-lm" if self.stateful else "classification" if LOGITS in self.outputs
                          else "embedding")
        self.task = meta.task
        self.manifest, self.tok, self.eos_ids = meta.manifest, meta.tok, meta.eos_ids
        self.bos_id, self.chat_template = meta.bos_id, meta.chat_template
        self.max_context, self.labels, self.pad_id = meta.context_length, meta.labels, meta.pad_id
        self.context_length = choose_context(context, self.max_context, self.folder) if self.stateful \
            else self.max_context
        self.kv_dims = _kv_dims(meta.config) if self.stateful else None
        self.seen = 0

    # ------------------------------------------------------------------ decoders
    def _require_decoder(self) -> None:
        if not self.stateful:
            raise NotImplementedError(f"{self.folder} holds an encoder (outputs {self.outputs}); it has no decoder")

    def _step(self, ids: np.ndarray) -> np.ndarray:
        """Feed ids (1, T) after the `seen` cached tokens; (T, V) logits (a view of the output tensor)."""
        n = ids.shape[1]
        self.request.start_async({  # start_async + wait: ~3x faster per step than infer() under load
            INPUT_IDS: ids,                                                                # (1, T)
            ATTENTION_MASK: np.ones((1, self.seen + n), dtype=np.int64),                  # (1, P+T)
            POSITION_IDS: np.arange(self.seen, self.seen + n, dtype=np.int64)[None],     # (1, T)
            BEAM_IDX: np.zeros(1, dtype=np.int32),                                        # (1,)
        })
        self.request.wait()
        self.seen += n
        return self.request.get_tensor(LOGITS).data[0]                                   # (T, V)

    def reset(self) -> None:
        """Forget the KV cache (the model's state): the next `forward` starts at position 0."""
        self._require_decoder()
        self.request.reset_state()
        self.seen = 0

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """Append ids to the cached sequence; (V,) float32 logits of the last position."""
        self._require_decoder()
        return np.array(self._step(np.asarray(ids, dtype=np.int64).reshape(1, -1))[-1], dtype=np.float32)

    def logits(self, input_ids) -> np.ndarray:
        self.reset()
        return np.array(self._step(np.asarray(input_ids, dtype=np.int64).reshape(1, -1)), dtype=np.float32)

    # ------------------------------------------------------------------ encoders
    def _encoder_outputs(self, texts: Sequence[str], output: str) -> tuple[np.ndarray, np.ndarray]:
        if self.stateful:
            raise NotImplementedError(f"{self.folder} holds a stateful decoder; it has no encoder head")
        ids, mask = encode_batch(self._tokenizer(), texts, self.pad_id)              # (N, T), (N, T)
        feed = {INPUT_IDS: ids, ATTENTION_MASK: mask}
        if TOKEN_TYPE_IDS in self.inputs:
            feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
        result = self.request.infer(feed)
        return np.array(result[self.compiled.output(output)], dtype=np.float32), mask

    def classify_logits(self, texts: Sequence[str]) -> np.ndarray:
        if self.task != "classification":
            raise NotImplementedError(f"{self.folder} has no classifier head (outputs {self.outputs})")
        return self._encoder_outputs(texts, LOGITS)[0]                                   # (N, C)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if LAST_HIDDEN_STATE not in self.outputs:
            raise NotImplementedError(f"{self.folder} does not output hidden states (outputs {self.outputs})")
        hidden, mask = self._encoder_outputs(texts, LAST_HIDDEN_STATE)                    # (N, T, C)
        return mean_pool(hidden, mask)                                                     # (N, C)

    # ------------------------------------------------------------------ text and housekeeping
    def _kv_cache(self) -> dict:
        kind = self.compiled.get_property("KV_CACHE_PRECISION").get_type_name() \
            if self.placement.setting.startswith("CPU") else "f16"
        size = {"u8": 1, "i8": 1, "u4": 0.5, "f16": 2, "bf16": 2, "f32": 4}.get(kind, 2)
        return kv_cache_info(*self.kv_dims, self.context_length, kind, size)   # u8: per-token scales not counted

    def info(self) -> dict:
        return {"format": "openvino", "precision": self.manifest.precision if self.manifest else "unknown",
                "backend": "openvino", "device": self.placement.device, "setting": self.placement.setting,
                "file_size": self.weight_bytes, "context_length": self.context_length,
                "max_context": self.max_context, "task": self.task,
                **({"kv_cache": self._kv_cache()} if self.stateful else {}),
                "labels": self.labels, "stateful": self.stateful}


def _kv_dims(config: dict) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) from config.json."""
    heads = int(config.get("num_attention_heads") or 1)
    head_dim = config.get("head_dim") or int(config.get("hidden_size") or 0) // heads
    return int(config.get("num_hidden_layers") or 0), int(config.get("num_key_value_heads") or heads), int(head_dim)


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return lines[-1] if lines else type(exc).__name__
