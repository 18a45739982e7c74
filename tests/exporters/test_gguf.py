"""GGUF export and the llama.cpp backend: file contents, parity with PyTorch, quantization report,
tokenizer parity, BERT classifiers and embedders, damaged files."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from roots_edge.core.errors import TargetError  # noqa: E402
from roots_edge.exporters import ExportOptions, export, load_source  # noqa: E402
from roots_edge.runtimes.llamacpp import LlamaCppBackend  # noqa: E402

from artifacts import GGUF_TARGETS as DECODER_TARGETS  # noqa: E402
from artifacts import gguf_file as _gguf  # noqa: E402


def _field(reader, key):
    return reader.fields[key].contents()


# ---------------------------------------------------------------------------- Llama decoders
def test_manifests_and_verification_metrics(llama_exports):
    f32, f16, q8, q4 = (llama_exports[t][1] for t in DECODER_TARGETS)
    for m in (f32, f16, q8, q4):
        assert m["verification"]["passed"] is True
        assert m["format"] == "gguf" and m["versions"]["gguf"] and m["versions"]["llama_cpp_python"]
    assert f32["verification"]["metrics"]["max_logit_diff"] < 1e-3     # f32 KV cache: measured ~1e-5
    assert f32["verification"]["metrics"]["top1"] == 1.0
    assert f16["verification"]["metrics"]["kl"] < 1e-5
    assert q8["verification"]["metrics"]["top1"] >= 0.95 and q8["verification"]["metrics"]["kl"] < 1e-3
    assert q4["verification"]["metrics"]["top1"] >= 0.9 and q4["verification"]["metrics"]["kl"] < 5e-3
    assert f32["bits_per_weight"] > 31 and 15 < f16["bits_per_weight"] < 17.5
    assert q4["bits_per_weight"] < q8["bits_per_weight"] < 9.5


def test_files_names_and_quant_report(llama_exports, tiny_llama256):
    for target, stem in (("gguf-f16", "F16"), ("gguf-q8", "Q8_0"), ("gguf-q4", "Q4_K_M")):
        folder, m = llama_exports[target]
        name = f"{tiny_llama256.name}-{stem}.gguf"
        assert sorted(p.name for p in folder.iterdir()) == sorted([name, "manifest.json"])  # intermediate removed
        assert m["gguf_file"] == name
        assert [(f["name"], f["bytes"]) for f in m["files"]] == [(name, (folder / name).stat().st_size)]
    q4 = llama_exports["gguf-q4"][1]
    assert q4["fallbacks"] == {}                      # every width is a multiple of 256
    assert q4["tensor_types"] == {"F32": 3, "Q4_K": 5, "Q6_K": 3}
    assert llama_exports["gguf-q8"][1]["tensor_types"] == {"F32": 3, "Q8_0": 8}


# keys where our f16 file and llama.cpp's converter's legitimately differ: none of them is read by llama.cpp's loader
# or changes how it splits text (the test checks the last with llama.cpp itself)
CONVERTER_ONLY_OR_DIFFERENT = {
    "general.name": "ours is the folder's name; the converter prettifies it with gguf-py's Metadata ('Tiny Llama256')",
    "general.size_label": "the converter's parameter-count label (e.g. '722K'): a model card field",
    "general.type": "the converter says 'model' (as opposed to 'adapter'); absent means a model",
    "tokenizer.ggml.add_eos_token": "we say False outright; the converter writes it only when tokenizer_config.json "
                                    "does (neither file makes llama.cpp append EOS: checked below)",
    "tokenizer.ggml.add_sep_token": "the converter reads False from the TemplateProcessing post-processor; we "
                                    "leave it to llama.cpp's default (no SEP either way: checked below)",
}


def _metadata(reader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_f16_file_is_what_llamas_converter_writes(llama_exports, llama_src, tmp_path):
    """llama.cpp's own convert_hf_to_gguf.py (from the sdist of the llama-cpp-python we run) on the same folder, to f16:
    the same tensors (names, shapes, types, and bytes: f16 rounding is exact, and llama's Q/K row permutation is the
    converter's own), and the same metadata but for the keys listed above, read back with gguf-py."""
    from gguf import GGUFReader

    from llama_converter import convert

    # our tiny tokenizer is GPT-2's byte-level BPE with GPT-2's split, trained here: the converter's table of known
    # tokenizers cannot name its pre-tokenizer (it hashes the ids of a check text), so the harness says "gpt-2"
    pre = json.loads((llama_src.folder / "tokenizer.json").read_text())["pre_tokenizer"]
    assert pre == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    ours = GGUFReader(_gguf(llama_exports["gguf-f16"][0]))
    theirs = GGUFReader(convert(llama_src.folder, tmp_path / "converter-F16.gguf", "f16", pre_tokenizer="gpt-2"))

    mine, other = {t.name: t for t in ours.tensors}, {t.name: t for t in theirs.tensors}
    blk = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm", "ffn_norm"]
    assert set(other) == {"token_embd.weight", "output_norm.weight", *(f"blk.0.{n}.weight" for n in blk)}  # tied
    assert set(mine) == set(other)
    for name, t in other.items():
        assert (mine[name].tensor_type.name, list(mine[name].shape)) == (t.tensor_type.name, list(t.shape)), name
        np.testing.assert_array_equal(np.asarray(mine[name].data), np.asarray(t.data), err_msg=name)
    assert {t.tensor_type.name for t in other.values()} == {"F16", "F32"}            # norms stay F32 in both
    q = llama_src.model.state_dict()["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert not np.array_equal(np.asarray(other["blk.0.attn_q.weight"].data), q.astype(np.float16))   # permuted

    a, b = _metadata(ours), _metadata(theirs)
    differ = {k for k in set(a) | set(b) if a.get(k, "absent") != b.get(k, "absent")}
    assert differ == set(CONVERTER_ONLY_OR_DIFFERENT), {k: (a.get(k, "absent"), b.get(k, "absent")) for k in differ}
    assert a["tokenizer.ggml.add_eos_token"] is False and b["tokenizer.ggml.add_sep_token"] is False
    spec = llama_src.spec
    key = {"general.architecture": "llama", "general.file_type": 1, "llama.context_length": spec.context_length,
           "llama.embedding_length": 256, "llama.block_count": 1, "llama.feed_forward_length": 512,
           "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 64,
           "llama.rope.freq_base": 10000.0, "llama.vocab_size": 512, "tokenizer.ggml.model": "gpt2",
           "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1,
           "tokenizer.ggml.padding_token_id": 2, "tokenizer.ggml.add_bos_token": True}
    assert {k: b[k] for k in key} == key                                  # equal, and what the config says
    assert b["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert not [k for k in b if ".rope.scaling" in k]    # transformers 5's rope_type "default": no scaling, in both
    assert b["tokenizer.ggml.tokens"] == llama_src.tokenizer.convert_ids_to_tokens(list(range(512)))
    assert len(b["tokenizer.ggml.merges"]) > 200 and b["tokenizer.ggml.token_type"][:3] == [3, 3, 3]
    # and llama.cpp splits text alike with either file
    texts = ["Return the number of items.", "  two  spaces\tand tab", "naïve café 😀", "a </s> b"]
    split = []
    for path in (_gguf(llama_exports["gguf-f16"][0]), tmp_path / "converter-F16.gguf"):
        llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        split.append([llm.tokenize(t.encode(), add_bos=True, special=True) for t in texts])
    assert split[0] == split[1] == [llama_src.tokenizer(t)["input_ids"] for t in texts]


def test_llama_cpp_greedy_equals_pytorch(llama_exports, llama_src):
    """The f32 file, opened by llama_cpp.Llama itself and decoded by llama.cpp's own greedy sampler."""
    import torch

    path = _gguf(llama_exports["gguf-f32"][0])
    llm = llama_cpp.Llama(str(path), n_ctx=128, type_k=0, type_v=0, verbose=False)
    for prompt in ("Return the", "The value of", "Raise ValueError if"):
        ids = llama_src.tokenizer(prompt)["input_ids"]
        with torch.no_grad():
            ref = llama_src.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=32,
                                           pad_token_id=2)[0, len(ids):].tolist()
        got = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            got.append(tok)
            if len(got) == len(ref):
                break
        assert got == ref and len(ref) >= 8


def _fuzz_strings(heldout: list[str]) -> list[str]:
    """~3,000 strings: docstring lines and slices, unicode, whitespace runs, digits, code."""
    rng = np.random.default_rng(0)
    docs = [d for d in heldout if d.strip()]
    out = []
    for d in docs[:400]:
        out.extend(line for line in d.splitlines()[:4] if line.strip())
        a = int(rng.integers(0, max(1, len(d) - 1)))
        out.append(d[a:a + int(rng.integers(1, 120))])
    specials = [
        "naïve café résumé", "Ελληνικά κείμενα", "日本語のテキスト", "中文字符", "emoji 👍🏽🎉",
        "e\u0301 combining", "مرحبا بالعالم", "zero\u200bwidth", "nbsp\u00a0here", "tab\tand\nnewline",
        "   leading", "trailing   ",
        "a  b   c    d", "\n\n\n", "\t\t\t", " ", "12345678901234567890", "3.14159 2.71828", "1,000,000",
        "0x1F 0b1010 1e-5", "def f(x):\n    return x**2  # square", "if (a && b) { c(); }", "x = [i for i in y]",
        "print(f'{x!r:>10}')", "don't won't it's I'm we've", "HTTP/1.1 200 OK", "path/to/file.py:12",
        "'''quoted''' \"double\"", "...---...", "a\r\nb", "ÀÉÎÕÜ", "Ωmega µ", "\u2581already", "##hash",
    ]
    for s in specials:
        out += [s, " " + s, s + " ", s * 3]
    words = " ".join(docs[:50]).split()
    for _ in range(3000 - len(out)):
        n = int(rng.integers(1, 12))
        parts = [words[int(rng.integers(len(words)))] for _ in range(n)]
        glue = [" ", "  ", "\n", "\t", "", "_", ".", "(", "0"]
        out.append("".join(p + glue[int(rng.integers(len(glue)))] for p in parts))
    return out


def test_tokenizer_parity_with_hugging_face(llama_exports, llama_src):
    llm = llama_cpp.Llama(str(_gguf(llama_exports["gguf-q4"][0])), vocab_only=True, verbose=False)
    texts = _fuzz_strings(llama_src.heldout)
    assert len(texts) >= 3000
    ref = [e.ids for e in llama_src.tokenizer.backend_tokenizer.encode_batch(texts)]
    mismatched = [t for t, r in zip(texts, ref) if llm.tokenize(t.encode(), add_bos=True, special=False) != r]
    assert mismatched == []
    # special tokens written in the text: Hugging Face parses them, so does llama.cpp with special=True
    text = "a </s> b <s><pad>"
    assert llm.tokenize(text.encode(), add_bos=True, special=True) == llama_src.tokenizer(text)["input_ids"]


def test_k_quant_on_64_wide_model_reports_fallbacks(tiny_llama, texts_file, tmp_path):
    m = export(load_source(tiny_llama, calibration=texts_file), "gguf-Q4_K_M", tmp_path / "q4")
    assert m["verification"]["passed"] is True
    # rows of 64 cannot hold a 256-value K block: llama.cpp fell back to Q5_0 (and Q8_0 for Q6_K)
    assert m["fallbacks"]["blk.0.attn_q.weight"] == "Q5_0"
    assert m["fallbacks"]["token_embd.weight"] == "Q8_0"
    narrow = {"token_embd.weight"} | {f"blk.{i}.{n}.weight" for i in (0, 1)
                                      for n in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up")}
    assert set(m["fallbacks"]) == narrow                      # exactly the 64-wide matrices; ffn_down rows are 256
    assert set(m["fallbacks"].values()) <= {"Q5_0", "Q5_1", "Q8_0"}


def test_every_quant_type_keeps_its_mixture_on_256_wide_rows(llama_src, tmp_path):
    """llama.cpp's quantizer on every target type: with rows that are multiples of 256 nothing falls back,
    so the mixtures the fallback report assumes are the ones this llama.cpp chooses."""
    from roots_edge.exporters.gguf import NEEDS_IMPORTANCE, QUANT_TYPES, write_float
    from roots_edge.exporters.gguf_quant import quant_type, quantize, row_lengths, tensor_report

    written = write_float(llama_src, tmp_path / "src-F32.gguf", "f32")
    src = written.path
    flat = {name: np.ones(row, np.float32) for name, row in row_lengths(written.shapes).items()}
    sizes = {}
    for name in QUANT_TYPES:
        qt = quant_type(name)
        dst = tmp_path / f"{name}.gguf"
        quantize(src, dst, qt, importance=flat if name in NEEDS_IMPORTANCE else None)   # llama.cpp needs one there
        report = tensor_report(dst, qt)
        assert report["fallbacks"] == {}, name
        assert qt.base in report["tensor_types"] and report["tensor_types"]["F32"] == 3, (name, report)
        sizes[name] = dst.stat().st_size
    assert sizes["Q2_K"] < sizes["Q3_K_M"] < sizes["Q4_K_M"] < sizes["Q5_K_M"] < sizes["Q6_K"] < sizes["Q8_0"]


def test_check_rows_policy():
    from roots_edge.exporters.gguf_quant import check_rows, quant_type

    check_rows({"a": 64, "b": 256}, quant_type("Q4_K_M"), allow_drift=False)      # some K blocks fit: fallbacks
    with pytest.raises(TargetError, match="would not contain a single Q4_K matrix"):
        check_rows({"a": 64, "b": 128}, quant_type("Q4_K_M"), allow_drift=False)
    check_rows({"a": 64, "b": 128}, quant_type("Q4_0"), allow_drift=False)         # 32-blocks fit
    check_rows({"a": 48}, quant_type("Q4_K_M"), allow_drift=True)                  # the user's call


def test_rows_not_multiple_of_32_raise_target_error(tiny_llama, texts_file, tmp_path):
    """Hidden size 48: every llama.cpp quant type would leave the file F16 (or abort)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from roots_edge.data.folder import save_folder

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    cfg = LlamaConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                      architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    folder = save_folder(LlamaForCausalLM(cfg).eval(), tok, tmp_path / "w48")
    src = load_source(folder, calibration=texts_file)
    for target in ("gguf-Q4_K_M", "gguf-Q4_0"):
        with pytest.raises(TargetError, match=r"rows of 48 values.*multiple of the 32-value block"):
            export(src, target, tmp_path / target)
        assert not (tmp_path / target).exists()
    m = export(src, "gguf-f16", tmp_path / "f16", ExportOptions(verify_texts=2))   # float types still work
    assert m["verification"]["passed"] is True


# ---------------------------------------------------------------------------- BERT encoders
def test_bert_classifier_labels_and_predictions(bert_exports, bert_src):
    from gguf import GGUFReader, PoolingType

    from roots_edge.train.classifier import predict_proba
    from conftest import SENTIMENT_HELDOUT

    for target, (folder, m) in bert_exports.items():
        assert m["verification"]["passed"] is True and m["verification"]["metrics"]["agreement"] == 1.0
        reader = GGUFReader(_gguf(folder))
        assert _field(reader, "bert.classifier.output_labels") == ["negative", "positive"]
        assert _field(reader, "bert.pooling_type") == PoolingType.RANK
        assert _field(reader, "bert.attention.causal") is False
        assert _field(reader, "tokenizer.ggml.model") == "bert"
        names = {t.name for t in reader.tensors}
        assert {"cls.weight", "cls.output.weight", "token_types.weight", "position_embd.weight"} <= names
    texts = [t for t, _ in SENTIMENT_HELDOUT]
    ref = predict_proba(bert_src.model, bert_src.tokenizer, texts)             # (N, C)
    backend = LlamaCppBackend(bert_exports["gguf-f32"][0], device="cpu")
    assert backend.labels == ["negative", "positive"] and backend.info()["task"] == "classification"
    logits = backend.classify_logits(texts)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    assert (probs.argmax(-1) == ref.argmax(-1)).all()
    strings = _fuzz_strings([t for t, _ in SENTIMENT_HELDOUT] * 3)[:600]   # WordPiece parity (incl. unicode)
    assert [backend.tokenize(s) for s in strings] == bert_src.tokenizer(strings)["input_ids"]


def test_minilm_embeddings(minilm_path, texts_file, tmp_path):
    m = export(load_source(minilm_path, calibration=texts_file), "gguf-f16", tmp_path / "f16",
               ExportOptions(verify_texts=6))
    assert m["verification"]["metrics"]["min_cosine"] > 0.999
    assert m["tensor_types"] == {"F16": 37, "F32": 64} and m["fallbacks"] == {}
    backend = LlamaCppBackend(tmp_path / "f16", device="cpu")   # MEAN pooling in the file
    assert backend.info()["task"] == "embedding" and backend.labels == []
    a, b = backend.embed(["A man is playing a guitar.", "Someone plays an instrument."])
    assert 0.4 < float(a @ b) < 0.95 and abs(float(a @ a) - 1) < 1e-5


# ---------------------------------------------------------------------------- damaged files, imports


def test_manifest_is_valid_json_with_extras(llama_exports):
    folder, m = llama_exports["gguf-q4"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk["gguf_file"] == m["gguf_file"] and on_disk["fallbacks"] == {}
    assert on_disk["precision"] == "Q4_K_M" and on_disk["target"] == "gguf-Q4_K_M"


def spm_style_tokenizer(texts: list[str], vocab_size: int = 400):
    """A SentencePiece-style BPE as transformers' converters write one (Llama 2's layout): U+2581 for spaces and
    before the text, byte fallback, and merges listing every pair whose concatenation is a piece, in piece order."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import TokenizersBackend

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer_tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size + len(specials),
                                                               special_tokens=specials, show_progress=False))
    vocab = trainer_tok.get_vocab()
    merges = sorted(((a, b) for piece, rank in vocab.items() for i in range(1, len(piece))
                     for a, b in [(piece[:i], piece[i:])] if a in vocab and b in vocab and rank >= len(specials)),
                    key=lambda ab: (vocab[ab[0] + ab[1]], vocab[ab[0]], vocab[ab[1]]))
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = trainer_tok.normalizer
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", vocab["<s>"])])
    return TokenizersBackend(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_sentencepiece_style_tokenizer_goes_in_as_llama_vocab(small_corpus, tmp_path):
    """Gemma, Llama 2 and TinyLlama ship such tokenizers; llama.cpp must split text exactly as they do."""
    import torch
    from gguf import GGUFReader
    from transformers import LlamaConfig, LlamaForCausalLM

    from roots_edge.data.folder import save_folder

    hf = spm_style_tokenizer(small_corpus.train[:400])
    config = LlamaConfig(vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    folder = save_folder(LlamaForCausalLM(config).eval(), hf, tmp_path / "spm-llama")
    m = export(load_source(folder), "gguf-f32", tmp_path / "g", ExportOptions(verify_texts=4), log=lambda *_: None)
    assert m["verification"]["passed"]
    path = tmp_path / "g" / m["gguf_file"]
    reader = GGUFReader(path)
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_space_prefix"].contents() is True
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert types[hf.convert_tokens_to_ids("<0x41>")] == 6 and types[hf.convert_tokens_to_ids("<unk>")] == 2
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    merged = [i for i, p in enumerate(reader.fields["tokenizer.ggml.tokens"].contents()) if len(p) > 1
              and scores[i] != 0]                       # pieces some merge makes: score = -(its first merge's rank)
    assert len(merged) > 100 and all(scores[a] > scores[b] for a, b in zip(merged, merged[1:]))
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    texts = small_corpus.val[:60] + ["naïve café – 3.14 ü 😀", "  two  spaces", "tab\there", "x"]
    theirs = [llm.tokenize(t.encode(), add_bos=True, special=True) for t in texts]
    ours = [hf(t)["input_ids"] for t in texts]
    assert ours == theirs
