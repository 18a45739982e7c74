import numpy as np
import pytest

from conftest import SENTIMENT_HELDOUT, SENTIMENT_TRAIN
from roots_edge import LanguageModel
from roots_edge.core.errors import DataError, TaskError, TextInputError


@pytest.fixture(scope="module")
def sentiment(minilm_path):
    model = LanguageModel.from_pretrained(minilm_path)
    texts, labels = zip(*SENTIMENT_TRAIN)
    metrics = model.finetune(list(texts), list(labels), progress=False)
    return model, metrics


def test_minilm_finetune_predicts_heldout(sentiment):
    model, metrics = sentiment
    assert model.spec.labels == ["negative", "positive"]
    preds = model.predict([t for t, _ in SENTIMENT_HELDOUT])
    correct = sum(p["label"] == y for p, (_, y) in zip(preds, SENTIMENT_HELDOUT))
    assert correct == len(SENTIMENT_HELDOUT), preds
    one = model.predict("This is a great movie!")
    assert one["label"] == "positive" and 0.5 < one["score"] <= 1.0


def test_save_and_reload_keeps_labels_and_outputs(sentiment, tmp_path):
    model, _ = sentiment
    model.save_pretrained(tmp_path / "clf")
    again = LanguageModel.from_pretrained(tmp_path / "clf")
    assert again.spec.architecture == "BertForSequenceClassification"
    assert again.spec.id2label == {0: "negative", 1: "positive"}
    a = model.predict([t for t, _ in SENTIMENT_HELDOUT])
    b = again.predict([t for t, _ in SENTIMENT_HELDOUT])
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-5)
    report = again.evaluate([t for t, _ in SENTIMENT_HELDOUT], [y for _, y in SENTIMENT_HELDOUT])
    assert report.accuracy == 1.0 and report.confusion == [[4, 0], [0, 4]]


def test_integer_labels_and_decoder_classifier(tiny_llama):
    model = LanguageModel.from_pretrained(tiny_llama)
    texts = [f"Return the {w} of the list." for w in ("sum", "length", "maximum", "minimum", "first", "last")] + \
            [f"Raise an error if the {w} is missing." for w in ("file", "key", "value", "path", "module", "name")]
    labels = [1] * 6 + [0] * 6
    model.finetune(texts, labels, progress=False, epochs=40)
    assert model.spec.architecture == "LlamaForSequenceClassification" and model.spec.labels == ["0", "1"]
    assert model.predict("Return the average of the list.")["label"] == "1"
    assert model.predict("Raise an error if the user is missing.")["label"] == "0"


def test_generate_and_errors(tiny_llama):
    model = LanguageModel.from_pretrained(tiny_llama)
    out = model.generate("Return the", max_new_tokens=12)
    assert isinstance(out, str) and len(out) > 0
    assert model.generate("Return the", max_new_tokens=12) == out  # greedy is deterministic
    with pytest.raises(TextInputError, match="empty"):
        model.generate("   ")
    with pytest.raises(TaskError, match="no classification head"):
        model.predict("text")
    with pytest.raises(DataError, match="2 texts but 1 labels"):
        model.finetune(["a", "b"], ["x"])
    with pytest.raises(DataError, match="at least two classes"):
        model.finetune(["a", "b"], ["x", "x"])


def test_one_inference_path_one_seed_one_text(tiny_llama, tiny_bert_classifier):
    """LanguageModel and roots_edge.load on the same folder: the same seed gives the same sampled text, the same
    greedy ids as Hugging Face's own greedy `generate`, and the same labels and embeddings."""
    import numpy as np
    import torch

    import roots_edge

    model, edge = LanguageModel.from_pretrained(tiny_llama), roots_edge.load(tiny_llama, device="cpu")
    for seed in (1, 7):
        kw = dict(temperature=0.9, top_k=40, top_p=0.95, seed=seed)
        assert model.generate("Return the", 24, **kw) == edge.generate("Return the", 24, **kw)
    assert model.generate("Return the", 24, temperature=0.9, seed=1) != model.generate("Return the", 24,
                                                                                           temperature=0.9, seed=2)
    ids = model.tokenizer("Return the", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                                  pad_token_id=model.spec.pad_token_id)[0, ids.shape[1]:].tolist()
    assert edge.generate_ids(ids[0].tolist(), 16, ignore_eos=True) == hf
    assert model.generate("Return the", 16) == model.tokenizer.decode(hf, skip_special_tokens=True)
    clf, clf_edge = LanguageModel.from_pretrained(tiny_bert_classifier), roots_edge.load(tiny_bert_classifier, device="cpu")
    texts = ["A wonderful film.", "An awful, boring film."]
    assert [p["label"] for p in clf.predict(texts)] == [p["label"] for p in clf_edge.classify(texts)]
    assert np.allclose(clf.embed(texts), clf_edge.embed(texts), atol=1e-6)


def test_lm_finetune_lowers_perplexity_on_new_text(tiny_llama):
    model = LanguageModel.from_pretrained(tiny_llama)
    texts = [f"The parrot number {i} says hello to the parrot number {i + 1}." for i in range(200)]
    metrics = model.finetune(texts, progress=False, steps=60, lr=3e-3, seq_len=32)
    assert metrics["val_perplexity"] < metrics["val_perplexity_before"] / 2
