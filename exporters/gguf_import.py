"""GGUF in: a llama.cpp file of any type, of a family roots-edge exports, back to a Hugging Face folder (float
weights, config, tokenizer, chat template) that every exporter takes.

The weights are read with gguf-py and dequantized with its own kernels, then undone exactly as
`exporters/gguf_decoder.py` did them, parameter for parameter: the model class (built from the rebuilt config,
without random initialisation) lists the parameters, the exporters' own tensor map names each one's
GGUF tensor, and the family's traits say what to invert (llama's Q/K row interleave, Gemma's w + 1 norms).
Importing our own gguf-f32 therefore gives back the original tensors (a test). The tokenizer is rebuilt
by transformers' GGUF tokenizer converters and checked against llama.cpp's own tokenization of sample text;
the record says the weights came from a quantized file, and which type.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from roots_edge.core.errors import CorruptModelError, UnsupportedModelError
from roots_edge.core.paths import sha256_file
from roots_edge.core.spec import FAMILY_LIST, supported_summary

PARITY_TEXTS = ("Return the number of items in the list.", "def f(x):\n    return x ** 2  # square",
                "Über naïve café façades, 3.14 and 2,718 — “quoted” text!", "   leading spaces and\ttabs\n\nnew",
                "The quick brown fox jumps over the lazy dog. 12345 67890")


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    value = f.contents()
    return value if value is not None else default


def read_config(reader, path: Path) -> tuple[object, dict]:
    """(family traits, config dict for the family's transformers config class) from a GGUF header."""
    arch = _field(reader, "general.architecture")
    family = next((f for f in FAMILY_LIST if f.gguf_arch == arch and f.decoder), None)
    if family is None:
        raise UnsupportedModelError(f"{path.name} is a {arch!r} model; roots-edge imports the decoder families "
                                    f"{', '.join(f.gguf_arch for f in FAMILY_LIST if f.decoder)} "
                                    f"({supported_summary()})")
    k = lambda name, default=None: _field(reader, f"{arch}.{name}", default)   # noqa: E731
    heads = int(k("attention.head_count"))
    hidden = int(k("embedding_length"))
    names = {t.name for t in reader.tensors}
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    cfg = {
        "model_type": family.model_type, "architectures": [next(iter(family.architectures))],
        "vocab_size": len(tokens) or int(next(t.shape[-1] for t in reader.tensors if t.name == "token_embd.weight")),
        "hidden_size": hidden, "intermediate_size": int(k("feed_forward_length")),
        "num_hidden_layers": int(k("block_count")), "num_attention_heads": heads,
        "num_key_value_heads": int(k("attention.head_count_kv", heads)),
        "head_dim": int(k("attention.key_length", hidden // heads)),
        "max_position_embeddings": int(k("context_length", 2048)),
        "rms_norm_eps": float(k("attention.layer_norm_rms_epsilon", 1e-6)),
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id"),
    }
    theta = float(k("rope.freq_base", 10000.0))
    if family.sliding_window:   # gemma3: local layers at llama.cpp's fixed base of 10k, every 6th layer global
        cfg.update(sliding_window=int(k("attention.sliding_window", 4096)), query_pre_attn_scalar=cfg["head_dim"],
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": theta},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                   layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                for i in range(cfg["num_hidden_layers"])])
        if k("final_logit_softcapping"):
            cfg["final_logit_softcapping"] = float(k("final_logit_softcapping"))
    else:
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    return family, cfg


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `gguf_decoder.rope_permute`: interleaved pairs back to [half 1 | half 2] per head."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_tensors(reader, family, config, model) -> dict[str, np.ndarray]:
    """{HF parameter name: float32 array} for every parameter of `model` (its names and shapes say what to read)."""
    import gguf

    from roots_edge.exporters.gguf_write import TensorMapper

    arch = gguf.MODEL_ARCH[family.gguf_arch.upper()]
    to_gguf = TensorMapper(arch, config.num_hidden_layers)
    stored = {t.name: t for t in reader.tensors}
    out = {}
    for name, param in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        tensor = stored.get(to_gguf(name))
        if tensor is None:
            raise CorruptModelError(f"the GGUF file has no tensor {to_gguf(name)!r} for {name}")
        w = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        w = w.reshape(tuple(param.shape))
        if family.rope_permute and name.endswith("self_attn.q_proj.weight"):
            w = unpermute(w, config.num_attention_heads)
        elif family.rope_permute and name.endswith("self_attn.k_proj.weight"):
            w = unpermute(w, config.num_key_value_heads)
        if family.norm_plus_one and name.endswith("norm.weight"):
            w = (w.astype(np.float64) - 1.0).astype(np.float32)
        out[name] = w
    return out


def import_gguf(path: str | Path, out: str | Path, *, overwrite: bool = False, log=print) -> Path:
    """Write the Hugging Face folder of GGUF file `path` to `out`; returns `out`."""
    import torch
    import transformers
    from gguf import GGUFReader, LlamaFileType

    from roots_edge.data.folder import save_folder
    from roots_edge.formats.gguf import find_gguf, read_header

    path = find_gguf(path)
    header = read_header(path)            # a clear error for a truncated or corrupt file, before gguf-py reads it
    reader = GGUFReader(path)
    family, cfg = read_config(reader, path)
    from transformers.initialization import no_init_weights

    config = getattr(transformers, transformers.CONFIG_MAPPING[family.model_type].__name__)(**cfg)
    cls = getattr(transformers, cfg["architectures"][0])
    with no_init_weights():    # the file's tensors replace every parameter: no random initialisation first
        model = cls(config)
    log(f"importing {path.name}: {family.name}, {config.num_hidden_layers} layers, hidden {config.hidden_size}")
    weights = read_tensors(reader, family, config, model)
    missing, _ = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    if set(missing) - {"lm_head.weight"}:
        raise CorruptModelError(f"{path.name} left parameters unset: {sorted(missing)[:5]}")
    model.tie_weights()
    tokenizer = gpt2_tokenizer(reader) or space_prefix_as_llama_cpp(hf_tokenizer(reader, path), reader)
    template = _field(reader, "tokenizer.chat_template")
    if template:
        tokenizer.chat_template = template
    parity = tokenizer_parity(tokenizer, path)
    try:
        file_type = LlamaFileType(header["file_type"]).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        file_type = str(header["file_type"])
    record = {"kind": "imported-gguf", "source": str(path), "source_sha256": sha256_file(path),
              "source_file_type": file_type, "quantized_source": file_type not in ("F32", "F16", "BF16"),
              "weights": "dequantized to float32 by gguf-py; a quantized source keeps its rounding",
              "tokenizer_parity": parity}
    model.generation_config = transformers.GenerationConfig(bos_token_id=cfg["bos_token_id"],
                                                            eos_token_id=cfg["eos_token_id"],
                                                            pad_token_id=cfg["pad_token_id"])
    return save_folder(model.eval(), tokenizer, Path(out), record, overwrite=overwrite)


def gpt2_tokenizer(reader):
    """The byte-level BPE with the GPT-2 split (what roots-edge writes: `tokenizer.ggml.pre = gpt-2`), rebuilt
    exactly from the file's tokens and merges; None for other tokenizers (transformers' converters rebuild
    those by architecture: SentencePiece for Gemma, Qwen's split for Qwen, ...)."""
    if _field(reader, "tokenizer.ggml.model") != "gpt2" or _field(reader, "tokenizer.ggml.pre") != "gpt-2":
        return None
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import TokenizersBackend

    tokens, types = _field(reader, "tokenizer.ggml.tokens"), _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    control = 3   # gguf TokenType.CONTROL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, types) if kind == control])
    special = {}
    for role in ("bos", "eos", "padding"):
        i = _field(reader, f"tokenizer.ggml.{role}_token_id")
        if i is not None and 0 <= i < len(tokens):
            special[role] = tokens[i]
    if special.get("bos") and _field(reader, "tokenizer.ggml.add_bos_token", False):
        bos = special["bos"]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                                           special_tokens=[(bos, tokens.index(bos))])
    return TokenizersBackend(tokenizer_object=tok, bos_token=special.get("bos"), eos_token=special.get("eos"),
                             pad_token=special.get("padding"), clean_up_tokenization_spaces=False)


def hf_tokenizer(reader, path: Path):
    """transformers' rebuild of a GGUF tokenizer (SentencePiece, Qwen's and Llama 3's BPE splits, ...)."""
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:  # transformers raises ValueError, KeyError, NotImplementedError for "cannot"
        kind = f"{_field(reader, 'tokenizer.ggml.model')!r} (pre-tokenizer {_field(reader, 'tokenizer.ggml.pre')!r})"
        raise UnsupportedModelError(f"{path.name}: its tokenizer {kind} cannot be rebuilt as a Hugging Face "
                                    f"tokenizer ({type(exc).__name__}: {str(exc)[:200]}); run the GGUF directly "
                                    "with roots_edge.load / roots-edge run instead") from None


def space_prefix_as_llama_cpp(tokenizer, reader):
    """A SentencePiece tokenizer that prefixes "▁" to every text segment, as llama.cpp and SentencePiece do
    when the file says `add_space_prefix` (the default). transformers rebuilds it with a Metaspace split whose
    prefix is skipped when the text already starts with a space, so " a" became ["▁a"] instead of
    ["▁▁", "a"]; a Prepend normalizer prefixes unconditionally (and again after each special token,
    as llama.cpp does)."""
    from tokenizers import normalizers, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (_field(reader, "tokenizer.ggml.model") != "llama" or not _field(reader, "tokenizer.ggml.add_space_prefix", True)
            or backend is None or not isinstance(backend.pre_tokenizer, pre_tokenizers.Metaspace)):
        return tokenizer
    steps = [backend.normalizer] if backend.normalizer is not None else []
    backend.normalizer = normalizers.Sequence([*steps, normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    return tokenizer


def tokenizer_parity(tokenizer, path: Path) -> dict:
    """Share of sample texts the rebuilt tokenizer splits exactly as llama.cpp does on the same file."""
    import llama_cpp

    from roots_edge.core.capture import captured_stderr

    with captured_stderr():
        llm = llama_cpp.Llama(str(path), n_ctx=64, vocab_only=True, verbose=False)
    same = [tokenizer(t)["input_ids"] == llm.tokenize(t.encode(), add_bos=True, special=True) for t in PARITY_TEXTS]
    return {"texts": len(same), "identical": sum(same)}
