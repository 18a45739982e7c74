import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_recipe
from roots_edge.data.folder import read_record


def test_tiny_model_beats_unigram(tiny_llama):
    m = read_record(tiny_llama)["metrics"]
    assert m["val_perplexity"] < m["unigram_perplexity"] / 2
    rec = read_record(tiny_llama)
    assert rec["data"]["sha256"] == "test" and rec["seed"] == 0 and rec["versions"]["torch"]
    files = {p.name for p in tiny_llama.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "roots_edge.json"} <= files
    assert not any(p.name.startswith(".") for p in tiny_llama.parent.iterdir())  # no checkpoint or tmp left


def _setup(small_corpus, recipe):
    from transformers import LlamaForCausalLM

    from roots_edge.data.tokenizer import train_bpe
    from roots_edge.train.lm import TokenStream, llama_config

    tok = train_bpe(small_corpus.train, recipe.tokenizer.vocab_size)
    streams = TokenStream.encode(tok, small_corpus)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(recipe.model, tok.get_vocab_size(), 0, 1, 2))
    return model, streams


def test_interrupted_run_resumes_to_identical_weights(tmp_path, small_corpus):
    from roots_edge.train.lm import train_lm

    recipe = tiny_recipe(steps=40)
    recipe.train.checkpoint_every = 10
    recipe.train.eval_every = 10**6  # only the final evaluation
    model_a, streams = _setup(small_corpus, recipe)
    train_lm(model_a, streams, recipe.train, progress=False)

    model_b, _ = _setup(small_corpus, recipe)
    ckpt = tmp_path / "ckpt"
    calls = {"n": 0}
    real_forward = model_b.forward

    def dying_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    model_b.forward = dying_forward
    with pytest.raises(KeyboardInterrupt):
        train_lm(model_b, streams, recipe.train, checkpoint_dir=ckpt, key="k", progress=False)
    assert json.loads((ckpt / "state.json").read_text())["step"] == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]

    model_c, _ = _setup(small_corpus, recipe)
    result = train_lm(model_c, streams, recipe.train, checkpoint_dir=ckpt, key="k", progress=False)
    assert result.resumed_from == 20 and result.steps == 40
    for (name, a), b in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoint_of_another_run_is_refused(tmp_path, small_corpus):
    from roots_edge.core.errors import RecipeError
    from roots_edge.train.lm import train_lm

    recipe = tiny_recipe(steps=20)
    recipe.train.checkpoint_every = 10
    model, streams = _setup(small_corpus, recipe)
    recipe.train.steps = 30
    train_lm(model, streams, recipe.train, checkpoint_dir=tmp_path / "c", key="one", progress=False)
    with pytest.raises(RecipeError, match="different run"):
        train_lm(model, streams, recipe.train, checkpoint_dir=tmp_path / "c", key="two", progress=False)


def test_unigram_baseline_matches_hand_count():
    from roots_edge.train.lm import unigram_nll

    train = np.array([0, 0, 1])
    # add-one smoothed counts over vocab 3: [3, 2, 1] / 6
    assert math.isclose(unigram_nll(train, np.array([0, 2]), 3), -(math.log(3 / 6) + math.log(1 / 6)) / 2)


def test_tokenizer_roundtrip_and_bos(small_corpus):
    from roots_edge.data.tokenizer import train_bpe

    tok = train_bpe(small_corpus.train, 512)
    text = "Return the value of x.\n\tIndented — ünïcode ✓"
    enc = tok.encode(text)
    assert enc.ids[0] == tok.token_to_id("<s>")
    assert tok.decode(enc.ids) == text


def test_recipe_errors(tmp_path):
    from roots_edge.core.errors import RecipeError
    from roots_edge.train.recipe import load_recipe

    assert load_recipe("default").model.hidden_size % 256 == 0
    with pytest.raises(RecipeError, match="no recipe 'nope'"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[model]\nhidden = 3\n')
    with pytest.raises(RecipeError, match="unknown keys in \\[model\\]"):
        load_recipe(bad)


def test_token_stream_separates_documents_with_the_models_own_eos():
    """Community tokenizers have no `</s>` (SmolLM2 ends documents with `<|endoftext|>`): the caller's EOS id
    separates documents, and a tokenizer with neither gets no separator rather than a crash."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from roots_edge.data.corpora import Corpus
    from roots_edge.train.lm import TokenStream

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "<|endoftext|>": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = Corpus(["a b", "b a"], ["a"], "test", "test")
    assert TokenStream.encode(tok, corpus, eos=2).train.tolist() == [0, 1, 2, 1, 0, 2]
    assert TokenStream.encode(tok, corpus).train.tolist() == [0, 1, 1, 0]
