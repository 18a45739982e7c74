"""The shared decode loop, through the torch backend on a tiny model."""
import pytest

from roots_edge.runtimes import RuntimeLoadError, detect_format, load
from roots_edge.runtimes.generation import ContextOverflowError


@pytest.fixture(scope="module")
def edge(tiny_llama):
    return load(tiny_llama, device="cpu")


def test_greedy_matches_transformers_generate(edge, tiny_llama, small_corpus):
    """Our decode loop (torch backend: one prefill, then one token at a time through its own KV cache) against
    transformers' own `model.generate(do_sample=False)` on the same folder: the same token ids, 40 new tokens
    from each of four prompts (one a docstring's first 63 tokens), and the same text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    eos = hf.generation_config.eos_token_id
    n, compared = 40, 0
    long = tok.decode(tok(small_corpus.val[0])["input_ids"][1:64])   # 63 tokens + 40 new fit the context of 128
    for prompt in ("Return the", "Raise ValueError if", "def f(x):\n    return", long):
        ids = tok(prompt)["input_ids"]
        assert edge.tokenize(prompt) == ids and len(ids) + n <= 128
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        ref = out[0, len(ids):].tolist()
        ref = ref[:ref.index(eos)] if eos in ref else ref     # generate keeps the EOS it stops at; we do not
        assert edge.generate_ids(ids, n) == ref, prompt
        assert edge.generate(prompt, n) == tok.decode(ref, skip_special_tokens=True), prompt
        compared += len(ref)
    assert compared >= 3 * n                                  # the comparison covered real continuations
    info = edge.info()
    assert (info["format"], info["device"], info["context_length"]) == ("torch", "cpu", 128)


def test_stream_pieces_join_to_the_full_text(edge):
    pieces = list(edge.generate("Return the", 30, stream=True))
    assert len(pieces) > 3 and "".join(pieces) == edge.generate("Return the", 30)


def test_seeded_sampling_repeats_and_differs_from_greedy(edge):
    a = edge.generate("The", 30, temperature=1.0, seed=7)
    assert a == edge.generate("The", 30, temperature=1.0, seed=7)
    assert a != edge.generate("The", 30, temperature=1.0, seed=8)


def test_stop_strings_cut_the_output(edge):
    full = edge.generate("Return the", 40)
    stop = full.strip()[3:6]
    cut = edge.generate("Return the", 40, stop=[stop])
    assert cut == full[:full.index(stop)]


def test_context_overflow_fails_or_truncates(edge):
    long = "word " * 400
    with pytest.raises(ContextOverflowError, match="context holds 128"):
        edge.generate(long, 5)
    # truncation keeps BOS and the prompt's tail: prompts that differ only far from the end continue alike
    tail = " Return the value of the list." * 40  # longer than what the context keeps
    a = edge.generate_ids(edge.tokenize("alpha " * 200 + tail), 8, truncate=True, ignore_eos=True)
    b = edge.generate_ids(edge.tokenize("beta gamma " * 150 + tail), 8, truncate=True, ignore_eos=True)
    assert len(a) == 8 and a == b


def test_tokenize_roundtrip(edge):
    ids = edge.tokenize("Return the value.")
    assert ids[0] == 0 and edge.detokenize(ids) == "Return the value."


def test_bad_paths(tmp_path):
    with pytest.raises(RuntimeLoadError, match="does not exist"):
        detect_format(tmp_path / "nothing")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeLoadError, match="not a GGUF, ONNX or OpenVINO file"):
        detect_format(junk)
    with pytest.raises(RuntimeLoadError, match="holds no model"):
        detect_format(tmp_path)
