"""BERT encoders -> GGUF (arch `bert`): embedders (MEAN pooling) and sequence classifiers (RANK pooling).

A classifier keeps Hugging Face's head whole: the pooler's dense layer becomes `cls` (llama.cpp
applies the tanh after it) and `classifier` becomes `cls.output`, so llama.cpp's RANK pooling
returns the class logits; the label names go in `bert.classifier.output_labels`. (llama.cpp's own
converter drops the pooler, which changes the logits of a BertForSequenceClassification.)

The WordPiece vocabulary is rewritten the way llama.cpp's tokenizer reads it: a "##x" continuation
piece becomes "x", a word-start piece "x" becomes "\u2581x", special tokens stay as they are.
"""
from __future__ import annotations

from pathlib import Path

from roots_edge.core.errors import UnsupportedModelError

from roots_edge.exporters.base import Source
from roots_edge.exporters.gguf_write import FloatType, GgufFile, TensorMapper, tensor_name, token_table, tokenizer_json

WORD_START = "\u2581"
DROPPED = ("embeddings.position_ids", "cls.predictions.", "cls.seq_relationship.")  # buffers, MLM / NSP heads


def check_tokenizer(tok: dict) -> None:
    """llama.cpp's WPM tokenizer lowercases and splits like an uncased BertTokenizer with "##" pieces."""
    model, norm = tok.get("model") or {}, tok.get("normalizer") or {}
    ok = (model.get("type") == "WordPiece" and model.get("continuing_subword_prefix", "##") == "##"
          and norm.get("type") == "BertNormalizer" and norm.get("lowercase", True)
          and (tok.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer")
    if not ok:
        raise UnsupportedModelError(
            "GGUF export embeds uncased WordPiece BERT tokenizers (WordPiece with '##' pieces, a lowercasing "
            f"BertNormalizer, BertPreTokenizer); this one has model {model.get('type')}, normalizer "
            f"{norm.get('type')} (lowercase={norm.get('lowercase')}). Use an ONNX or OpenVINO target instead.")


def phantom_space(piece: str, token_type: int) -> str:
    from gguf import TokenType

    if token_type == TokenType.CONTROL:
        return piece
    return piece[2:] if piece.startswith("##") else WORD_START + piece


def add_tokenizer(f: GgufFile, source: Source) -> None:
    hf, spec = source.tokenizer, source.spec
    check_tokenizer(tokenizer_json(hf))
    pieces, types = token_table(hf, spec.vocab_size)
    w = f.writer
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")  # WPM ignores it; written so llama.cpp does not guess
    w.add_token_list([phantom_space(p, t) for p, t in zip(pieces, types)])
    w.add_token_types(types)
    # [CLS] text [SEP], as the HF post-processor does: llama.cpp calls CLS its BOS and SEP its EOS/SEP.
    ids = {"cls": hf.cls_token_id, "sep": hf.sep_token_id, "unk": hf.unk_token_id, "pad": hf.pad_token_id,
           "mask": hf.mask_token_id}
    missing = [k for k in ("cls", "sep", "unk") if ids[k] is None]
    if missing:
        raise UnsupportedModelError(f"the BERT tokenizer lacks the {', '.join(missing)} token(s) llama.cpp needs")
    w.add_bos_token_id(ids["cls"])
    w.add_eos_token_id(ids["sep"])
    w.add_sep_token_id(ids["sep"])
    w.add_unk_token_id(ids["unk"])
    if ids["pad"] is not None:
        w.add_pad_token_id(ids["pad"])
    if ids["mask"] is not None:
        w.add_mask_token_id(ids["mask"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    w.add_add_sep_token(True)


def gguf_name(hf_name: str, classifier: bool, to_gguf: TensorMapper) -> str | None:
    """The GGUF name of a BertModel / BertFor* parameter; None for parameters llama.cpp does not use."""
    from gguf import MODEL_TENSOR

    name = hf_name.removeprefix("bert.")
    if name.startswith(DROPPED):
        return None
    head = {"pooler.dense": MODEL_TENSOR.CLS, "classifier": MODEL_TENSOR.CLS_OUT}
    stem, _, suffix = name.rpartition(".")
    if stem in head:
        return tensor_name(head[stem], suffix=suffix) if classifier else None
    return to_gguf(name)


def write_bert(source: Source, path: Path, ftype: FloatType) -> GgufFile:
    """Write `source` (BertModel, BertForMaskedLM or BertForSequenceClassification) as one GGUF file."""
    import gguf

    spec = source.spec
    classifier = spec.task == "classification"
    state = source.model.state_dict()
    f = GgufFile(path, gguf.MODEL_ARCH.BERT, ftype)
    f.add_shape(spec, source.folder.name)
    w = f.writer
    w.add_layer_norm_eps(spec.norm_eps)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.RANK if classifier else gguf.PoolingType.MEAN)
    if classifier:
        w.add_classifier_output_labels(spec.labels)
    type_table = next(v for k, v in state.items() if k.endswith("token_type_embeddings.weight"))
    w.add_token_type_count(int(type_table.shape[0]))
    add_tokenizer(f, source)
    to_gguf = TensorMapper(gguf.MODEL_ARCH.BERT, spec.num_layers)
    for hf_name, tensor in state.items():
        name = gguf_name(hf_name, classifier, to_gguf)
        if name is not None:
            f.add(name, tensor.detach().float().cpu().numpy())  # (out, in) or (n,)
    return f.close()
