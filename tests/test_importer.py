"""`roots-edge import FILE.gguf`: a GGUF back to a Hugging Face folder every exporter takes. Our own f32 export of
each family comes back tensor for tensor; bad files and unsupported architectures are clear errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from roots_edge.cli import main
from roots_edge.core.errors import UnsupportedModelError
from roots_edge.exporters import export, load_source
from roots_edge.exporters.gguf_import import import_gguf

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gemma3"])
def test_round_trip_of_our_own_f32_export(family, tiny_llama, tiny_family, texts_jsonl, tmp_path):
    folder = tiny_llama if family == "llama" else tiny_family(family)
    export(load_source(folder, calibration=texts_jsonl), "gguf-f32", tmp_path / "g", log=lambda *_: None)
    gguf_file = next((tmp_path / "g").glob("*.gguf"))
    r = CliRunner().invoke(main, ["import", str(gguf_file), "-o", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    assert "from F32 weights" in r.output and "5/5 sample texts" in r.output
    a, b = load_file(folder / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(a) == set(b)
    for name in a:
        if family == "gemma3" and name.endswith("norm.weight"):   # stored as w + 1 in f32: one rounding
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1.2e-7)
        else:
            np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    record = json.loads((tmp_path / "back" / "roots_edge.json").read_text())
    assert record["kind"] == "imported-gguf" and record["quantized_source"] is False
    assert record["source_sha256"] and record["tokenizer_parity"] == {"texts": 5, "identical": 5}
    again = export(load_source(tmp_path / "back", calibration=texts_jsonl), "onnx-fp32", tmp_path / "o",
                   log=lambda *_: None)            # the imported folder exports like any other
    assert again["verification"]["passed"]


def test_quantized_source_is_recorded(tiny_llama256, texts_jsonl, tmp_path):
    export(load_source(tiny_llama256, calibration=texts_jsonl), "gguf-q4", tmp_path / "g", log=lambda *_: None)
    out = import_gguf(next((tmp_path / "g").glob("*.gguf")), tmp_path / "back", log=lambda *_: None)
    record = json.loads((out / "roots_edge.json").read_text())
    assert record["quantized_source"] is True and record["source_file_type"] == "Q4_K_M"
    a, b = load_file(tiny_llama256 / "model.safetensors"), load_file(out / "model.safetensors")
    err = np.abs(a["model.layers.0.mlp.down_proj.weight"] - b["model.layers.0.mlp.down_proj.weight"]).mean()
    assert 0 < err < 0.05 * np.abs(a["model.layers.0.mlp.down_proj.weight"]).mean() * 10


def test_bad_files(tiny_bert_classifier, texts_jsonl, tmp_path):
    r = CliRunner().invoke(main, ["import", str(tmp_path / "missing.gguf"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "does not exist" in r.output
    (tmp_path / "cut.gguf").write_bytes(b"GGUF" + bytes(40))
    r = CliRunner().invoke(main, ["import", str(tmp_path / "cut.gguf"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "truncated or corrupt" in r.output and "Traceback" not in r.output
    export(load_source(tiny_bert_classifier, calibration=texts_jsonl), "gguf-f32", tmp_path / "bert",
           log=lambda *_: None)
    with pytest.raises(UnsupportedModelError, match="'bert' model; roots-edge imports the decoder families llama"):
        import_gguf(next((tmp_path / "bert").glob("*.gguf")), tmp_path / "x", log=lambda *_: None)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ a GGUF written by llama.cpp's own converter
# Third-party GGUFs (Llama 2, TinyLlama, Mistral) come from llama.cpp's convert_hf_to_gguf.py out of a SentencePiece
# tokenizer.model: tokenizer.ggml.model = "llama", with scores, byte pieces and their own special tokens.
SPM_TEXTS = ["Return the number of items in the list.", "def f(x):\n    return x ** 2  # square",
             "two  spaces,   three and\ttabs\n\nnew lines", "trailing spaces  ", "naïve café façade — “quoted” ü",
             "日本語のテキスト 中文", "emoji 👍🏽🎉 and 😀", "e\u0301 combining, zero\u200bwidth, nbsp\u00a0here",
             "Ωmega µ ÀÉÎÕÜ", "12345678901234567890 3.14159", "x", "\n\nleading newlines"]
LEADING_SPACES = ["  two leading spaces", " one leading space", "   three,  then two", "\u2581already a piece"]


@pytest.fixture(scope="module")
def spm_llama(small_corpus, tmp_path_factory):
    """(folder, SentencePieceProcessor): a tiny Llama (2 layers, 4 query and 2 KV heads, untied head, rms eps 1e-5 as
    Llama 2's) with a real SentencePiece BPE trained as Llama 2's was (byte fallback, split digits, dummy prefix, no
    whitespace folding): tokenizer.model beside transformers' conversion of it, as such models are published."""
    import io
    import shutil

    spm = pytest.importorskip("sentencepiece")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from roots_edge.data.folder import save_folder

    root = tmp_path_factory.mktemp("spm-llama")
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(small_corpus.train[:600]), model_writer=proto, vocab_size=512, model_type="bpe",
        byte_fallback=True, split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", allow_whitespace_only_pieces=True, character_coverage=0.9995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=1 << 16, minloglevel=2)
    staging = root / "tokenizer"
    staging.mkdir()
    (staging / "tokenizer.model").write_bytes(proto.getvalue())
    (staging / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer",
                                                               "bos_token": "<s>", "eos_token": "</s>",
                                                               "unk_token": "<unk>", "legacy": False,
                                                               "add_bos_token": True, "add_eos_token": False}))
    tok = AutoTokenizer.from_pretrained(staging)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    assert len(tok) == sp.vocab_size() == 512
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, architectures=["LlamaForCausalLM"])
    torch.manual_seed(0)
    folder = save_folder(LlamaForCausalLM(config).eval(), tok, root / "spm-llama")
    shutil.copy(staging / "tokenizer.model", folder / "tokenizer.model")
    return folder, sp


@pytest.fixture(scope="module")
def converted(spm_llama, tmp_path_factory):
    """outtype -> (llama.cpp's converter's GGUF of the folder, roots-edge's import of it): f32 through
    `import_gguf`, f16 through `roots-edge import`."""
    from llama_converter import convert

    folder, _ = spm_llama
    root = tmp_path_factory.mktemp("spm-gguf")
    out = {}
    for outtype in ("f32", "f16"):
        gguf_file = convert(folder, root / f"spm-llama-{outtype.upper()}.gguf", outtype)
        back = root / f"back-{outtype}"
        if outtype == "f32":
            import_gguf(gguf_file, back, log=lambda *_: None)
        else:
            r = CliRunner().invoke(main, ["import", str(gguf_file), "-o", str(back)])
            assert r.exit_code == 0 and "from F16 weights" in r.output, r.output
        out[outtype] = (gguf_file, back)
    return out


def _f16(w: np.ndarray) -> np.ndarray:
    """What the converter's f16 keeps of a weight: matrices rounded to f16, vectors (norms) left f32."""
    return w.astype(np.float16).astype(np.float32) if w.ndim == 2 else w


def test_converter_gguf_is_a_sentencepiece_vocab(spm_llama, converted):
    from gguf import GGUFReader

    folder, sp = spm_llama
    reader = GGUFReader(converted["f16"][0])
    field = lambda key: reader.fields[key].contents()   # noqa: E731
    assert (field("tokenizer.ggml.model"), field("tokenizer.ggml.pre")) == ("llama", "default")
    assert field("tokenizer.ggml.tokens") == [sp.id_to_piece(i) for i in range(512)]
    assert field("tokenizer.ggml.scores") == pytest.approx([sp.get_score(i) for i in range(512)])
    assert field("tokenizer.ggml.token_type")[:4] == [2, 3, 3, 6]        # <unk> UNKNOWN, <s> </s> CONTROL, <0x00> BYTE
    assert {t.name for t in reader.tensors} >= {"output.weight", "blk.1.attn_q.weight"}   # untied head, 2 layers


def test_converter_gguf_imports_weights_exactly(spm_llama, converted):
    """f32: every tensor back bit for bit (Q/K un-permuted); f16: each one the f16 rounding of the original."""
    folder, _ = spm_llama
    original = load_file(folder / "model.safetensors")
    for outtype, (_, back) in converted.items():
        got = load_file(back / "model.safetensors")
        assert set(got) == set(original) and "lm_head.weight" in got
        for name, w in original.items():
            np.testing.assert_array_equal(got[name], w if outtype == "f32" else _f16(w), err_msg=f"{outtype} {name}")
        record = json.loads((back / "roots_edge.json").read_text())
        assert record["source_file_type"] == outtype.upper() and record["quantized_source"] is False
        config = json.loads((back / "config.json").read_text())
        want = json.loads((folder / "config.json").read_text())
        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
                "eos_token_id", "rope_parameters")
        assert {k: config[k] for k in keys} == {k: want[k] for k in keys}


def test_converter_gguf_imports_to_the_same_logits(spm_llama, converted):
    """The imported folders, run by roots-edge's torch backend, against the original model in transformers: the f32
    import to float rounding, the f16 one to float rounding of the original with f16 weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from roots_edge.runtimes import load

    folder, sp = spm_llama
    ref = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = [[1] + sp.encode(t) for t in SPM_TEXTS[:4] + LEADING_SPACES[:1]]

    def logits(model):
        with torch.no_grad():
            return [model(torch.tensor([x])).logits[0].numpy() for x in ids]

    want = {"f32": logits(ref)}
    ref.load_state_dict({k: torch.from_numpy(_f16(v.numpy())) for k, v in ref.state_dict().items()})
    want["f16"] = logits(ref)
    for outtype, (_, back) in converted.items():
        assert json.loads((back / "config.json").read_text())["rms_norm_eps"] == pytest.approx(1e-5), outtype
        edge = load(back, device="cpu")
        for x, w in zip(ids, want[outtype]):
            np.testing.assert_allclose(edge.logits(x), w, rtol=0, atol=1e-5 * np.abs(w).max(), err_msg=outtype)


def test_converter_gguf_tokenizer_splits_as_sentencepiece(spm_llama, converted, small_corpus):
    """The imported tokenizer against SentencePiece itself, llama.cpp on the converter's file, and transformers'
    conversion of tokenizer.model in the original folder: the same ids (byte fallback included) and the same text
    back."""
    from transformers import AutoTokenizer

    folder, sp = spm_llama
    gguf_file, back = converted["f16"]
    ours = AutoTokenizer.from_pretrained(back)
    theirs = AutoTokenizer.from_pretrained(folder)
    llm = llama_cpp.Llama(str(gguf_file), vocab_only=True, verbose=False)
    texts = SPM_TEXTS + [d for d in small_corpus.val[:40] if not d.startswith(" ")]   # leading spaces: below
    for text in texts:
        want = [1] + sp.encode(text)
        assert ours(text)["input_ids"] == want == llm.tokenize(text.encode(), add_bos=True, special=False), text
        assert theirs(text)["input_ids"] == want, text
        assert ours.decode(want, skip_special_tokens=True) == sp.decode(want[1:]) == text
    byte_pieces = {i for i in range(512) if sp.is_byte(i)}
    assert len(byte_pieces) == 256
    for text in ("日本語のテキスト 中文", "emoji 👍🏽🎉 and 😀"):   # characters the 512 pieces lack: UTF-8 bytes
        assert byte_pieces & set(ours(text)["input_ids"]), text


def test_converter_gguf_tokenizer_splits_leading_spaces_as_llama_cpp(spm_llama, converted):
    from transformers import AutoTokenizer

    folder, sp = spm_llama
    gguf_file, back = converted["f16"]
    ours = AutoTokenizer.from_pretrained(back)
    llm = llama_cpp.Llama(str(gguf_file), vocab_only=True, verbose=False)
    for text in LEADING_SPACES:
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == [1] + sp.encode(text), text
        assert ours(text)["input_ids"] == [1] + sp.encode(text), text
    assert json.loads((back / "roots_edge.json").read_text())["tokenizer_parity"] == {"texts": 5, "identical": 5}
