"""Decoders -> GGUF, tensor for tensor what llama.cpp's converter writes, driven by the family's traits
(`roots_edge.core.spec.Family`) rather than per-family code:

- `llama`: Q and K rows are permuted per head from Hugging Face's rotate-half RoPE layout to llama.cpp's
  interleaved one (without it the file loads and runs, but attention is wrong); the other architectures
  (qwen2, qwen3, gemma3) take the rotate-half layout as it is.
- q/k/v biases (qwen2) and per-head q/k norms (qwen3, gemma3) map by gguf-py's tensor map.
- Gemma's RMSNorm computes (1 + w) x: every norm weight is stored as w + 1; its sliding window goes in
  the header, and llama.cpp scales the embeddings by sqrt(hidden) itself.
- Tied embeddings: no `output.weight`; llama.cpp reuses `token_embd.weight`.
- The byte-level BPE tokenizer goes in as `gpt2` with the `gpt-2` pre-tokenizer, which splits text
  exactly as the `tokenizers` ByteLevel(use_regex=True) pre-tokenizer does; a SentencePiece-style BPE
  (Gemma, Llama 2) goes in as `llama` with scores recovered from its merge order.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from roots_edge.core.errors import UnsupportedModelError

from roots_edge.exporters.base import Source
from roots_edge.exporters.gguf_write import FloatType, GgufFile, TensorMapper, token_table, tokenizer_json

SKIPPED = ("rotary_emb.inv_freq",)  # buffers, not weights
SPM_SPACE = "\u2581"                # SentencePiece's visible space
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """(n_head * head_dim, in) rows from [half 1 | half 2] per head to interleaved pairs."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tokenizer_kind(tok: dict) -> str:
    """"gpt2": byte-level BPE with the GPT-2 split (what roots-edge trains); "spm": SentencePiece-style BPE
    (byte fallback, spaces as U+2581, as Gemma, Llama 2 and TinyLlama ship it). llama.cpp reproduces both; any
    other tokenizer is refused, because llama.cpp would split text differently."""
    model, pre, norm = tok.get("model") or {}, tok.get("pre_tokenizer") or {}, tok.get("normalizer")
    if (model.get("type") == "BPE" and not model.get("byte_fallback") and norm is None
            and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")):
        return "gpt2"
    if model.get("type") == "BPE" and model.get("byte_fallback") and (_spaces_as_marker(norm) or
                                                                       _metaspace(pre) is not None):
        return "spm"
    found = f"model {model.get('type')}, pre-tokenizer {pre.get('type')}, normalizer {(norm or {}).get('type')}"
    raise UnsupportedModelError(
        f"GGUF export embeds byte-level BPE tokenizers with the GPT-2 split and SentencePiece-style BPE (byte "
        f"fallback, spaces as \u2581); this model's tokenizer has {found}. llama.cpp would tokenize it "
        "differently. Export to ONNX or OpenVINO instead.")


def _steps(node: dict | None) -> list[dict]:
    if not node:
        return []
    return [s for n in node.get("normalizers", node.get("pretokenizers", [node])) for s in _steps(n)] \
        if node.get("type") == "Sequence" else [node]


def _spaces_as_marker(norm: dict | None) -> bool:
    return any(s.get("type") == "Replace" and (s.get("pattern") or {}).get("String") == " "
               and s.get("content") == SPM_SPACE for s in _steps(norm))


def _metaspace(pre: dict | None) -> dict | None:
    return next((s for s in _steps(pre) if s.get("type") == "Metaspace" and s.get("replacement") == SPM_SPACE), None)


def spm_add_space_prefix(tok: dict) -> bool:
    """Whether the tokenizer puts U+2581 before the text (Llama 2: yes; Gemma: no)."""
    if any(s.get("type") == "Prepend" and s.get("prepend") == SPM_SPACE for s in _steps(tok.get("normalizer"))):
        return True
    meta = _metaspace(tok.get("pre_tokenizer"))
    return bool(meta) and meta.get("prepend_scheme", "always") in ("always", "first")


def spm_scores(tok: dict, pieces: list[str]) -> list[float]:
    """Per piece, the score llama.cpp's SentencePiece tokenizer merges by (the highest-scoring bigram first):
    minus the rank of the first merge that makes it. Converted SentencePiece tokenizers list every pair
    (a, b) whose concatenation is a piece, ordered by that piece's score, so this order is the original one."""
    rank: dict[str, int] = {}
    for i, m in enumerate(tok["model"].get("merges", [])):
        left, right = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(left + right, i)
    return [-float(rank[p]) if p in rank else 0.0 for p in pieces]


def merges(tok: dict) -> list[str]:
    """BPE merges as llama.cpp stores them: "left right" strings, in rank order."""
    return [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]


def add_hparams(f: GgufFile, spec, name: str, config) -> None:
    f.add_shape(spec, name)
    w = f.writer
    if spec.sliding_window:
        w.add_sliding_window(int(spec.sliding_window))
    softcap = getattr(config, "final_logit_softcapping", None)
    if softcap:
        w.add_final_logit_softcapping(float(softcap))
    w.add_vocab_size(spec.vocab_size)
    w.add_head_count_kv(spec.num_kv_heads)
    w.add_layer_norm_rms_eps(spec.norm_eps)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_key_length(spec.head_dim)    # the converter writes these whenever config.json names head_dim,
    w.add_value_length(spec.head_dim)  # as transformers 5 always does


def add_tokenizer(f: GgufFile, source: Source) -> None:
    from gguf import TokenType

    tok, spec, hf = tokenizer_json(source.tokenizer), source.spec, source.tokenizer
    kind = tokenizer_kind(tok)
    pieces, types = token_table(hf, spec.vocab_size)
    w = f.writer
    if kind == "gpt2":
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_merges(merges(tok))
    else:
        unk = tok["model"].get("unk_token")
        for i, p in enumerate(pieces):
            if BYTE_PIECE.fullmatch(p):
                types[i] = int(TokenType.BYTE)
            elif p == unk:
                types[i] = int(TokenType.UNKNOWN)
        w.add_tokenizer_model("llama")
        w.add_token_scores(spm_scores(tok, pieces))
        w.add_add_space_prefix(spm_add_space_prefix(tok))
        if unk in pieces:
            w.add_unk_token_id(pieces.index(unk))
    w.add_token_list(pieces)
    w.add_token_types(types)
    probe = hf("a")["input_ids"]  # what the HF tokenizer adds around a text, asked rather than guessed
    for token_id, add in ((spec.bos_token_id, w.add_bos_token_id), (spec.eos_token_id, w.add_eos_token_id),
                          (spec.pad_token_id, w.add_pad_token_id)):
        if token_id is not None:
            add(int(token_id))
    w.add_add_bos_token(spec.bos_token_id is not None and probe[0] == spec.bos_token_id)
    w.add_add_eos_token(spec.eos_token_id is not None and probe[-1] == spec.eos_token_id)
    template = getattr(hf, "chat_template", None)
    if isinstance(template, str) and template.strip():
        w.add_chat_template(template)            # llama.cpp and roots-edge chat read it from the header


def write_decoder(source: Source, path: Path, ftype: FloatType) -> GgufFile:
    """Write `source` (a causal LM of a decoder family) as one GGUF file of float type `ftype`."""
    import gguf

    spec = source.spec
    traits = spec.traits
    if spec.task != "causal-lm":
        raise UnsupportedModelError(
            f"GGUF export supports causal LMs, not {spec.architecture}: llama.cpp's classification pooling reads "
            "the first token, Hugging Face's decoder classifiers the last. Use an ONNX or OpenVINO target.")
    check_attention_scale(spec, source.model.config)
    arch = gguf.MODEL_ARCH[traits.gguf_arch.upper()]
    f = GgufFile(path, arch, ftype)
    add_hparams(f, spec, source.folder.name, source.model.config)
    add_tokenizer(f, source)
    to_gguf = TensorMapper(arch, spec.num_layers)
    lm_head = "lm_head.weight"
    for hf_name, tensor in source.model.state_dict().items():
        if hf_name.endswith(SKIPPED) or (hf_name == lm_head and spec.tie_embeddings):
            continue
        w = tensor.detach().float().cpu().numpy()   # (out, in) or (n,)
        if traits.rope_permute and hf_name.endswith("self_attn.q_proj.weight"):
            w = rope_permute(w, spec.num_heads)     # (n_head * head_dim, hidden)
        elif traits.rope_permute and hf_name.endswith("self_attn.k_proj.weight"):
            w = rope_permute(w, spec.num_kv_heads)  # (n_kv_head * head_dim, hidden)
        if traits.norm_plus_one and hf_name.endswith("norm.weight"):
            w = w + 1.0                             # (n,): Gemma's (1 + w) folded in
        f.add(to_gguf(hf_name), w)
    return f.close()


def check_attention_scale(spec, config) -> None:
    """llama.cpp's gemma3 scales attention by 1/sqrt(head_dim); a model trained with another
    `query_pre_attn_scalar` would run with the wrong scale there."""
    scalar = getattr(config, "query_pre_attn_scalar", None)
    if spec.family == "gemma3" and scalar is not None and int(scalar) != spec.head_dim:
        raise UnsupportedModelError(
            f"this Gemma 3 model scales attention by 1/sqrt({scalar}) (query_pre_attn_scalar), but llama.cpp's "
            f"gemma3 uses 1/sqrt(head_dim = {spec.head_dim}); export it to ONNX or OpenVINO instead")
