import json

import pytest

from roots_edge.data.corpora import _hash_split, check_labeled, read_corpus, read_labeled
from roots_edge.core.errors import DataError


def test_stdlib_corpus_is_large_stable_and_split(stdlib_corpus):
    from roots_edge.data.corpora import stdlib_docstrings

    assert stdlib_corpus.n_chars > 800_000
    assert 0.03 < len(stdlib_corpus.val) / (len(stdlib_corpus.train) + len(stdlib_corpus.val)) < 0.07
    again = stdlib_docstrings()
    assert again.sha256 == stdlib_corpus.sha256
    assert again.val == stdlib_corpus.val


def test_split_depends_on_content_not_order():
    docs = [f"document number {i} with some text" for i in range(400)]
    a = _hash_split(docs)
    b = _hash_split(list(reversed(docs)))
    assert sorted(a[1]) == sorted(b[1]) and 5 <= len(a[1]) <= 40


def test_read_corpus_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\n\nsecond paragraph\n\n\n")
    (tmp_path / "b.jsonl").write_text('{"text": "third"}\n\n{"text": "fourth"}\n')
    (tmp_path / "c.csv").write_text("text,other\nfifth,1\n")
    c = read_corpus([tmp_path])
    assert sorted(c.train + c.val) == ["fifth", "first paragraph", "fourth", "second paragraph", "third"]


def test_empty_corpus_and_bad_rows(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(DataError, match="holds no text"):
        read_corpus([tmp_path / "empty.txt"])
    with pytest.raises(DataError, match="does not exist"):
        read_corpus([tmp_path / "missing.txt"])
    (tmp_path / "bad.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(DataError, match="'text' field"):
        read_corpus([tmp_path / "bad.jsonl"])


def test_labeled_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\ngood,pos\nbad,neg\n")
    rows = read_labeled(p)
    assert rows.texts == ["good", "bad"] and rows.label_names == ["neg", "pos"]
    q = tmp_path / "d.jsonl"
    q.write_text("\n".join(json.dumps({"text": t, "y": y}) for t, y in [("a", 1), ("b", 0), ("c", 10)]))
    assert read_labeled(q, label_column="y").label_names == ["0", "1", "10"]  # numeric order, not text order


@pytest.mark.parametrize("texts,labels,message", [
    (["a", "b"], ["x"], "2 texts but 1 labels"),
    (["a", "b"], ["x", "x"], "at least two classes"),
    ([], [], "no training examples"),
    (["a", "  "], ["x", "y"], "text #1 is empty"),
])
def test_check_labeled_errors(texts, labels, message):
    with pytest.raises(DataError, match=message):
        check_labeled(texts, labels)


def test_missing_label_column(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,category\ngood,pos\n")
    with pytest.raises(DataError, match="column 'label' is missing.*--label-column"):
        read_labeled(p)


def test_finetune_kind_reads_the_intent_from_the_columns(tmp_path):
    from roots_edge.data.corpora import finetune_kind

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("some text to finetune on")
    (tmp_path / "rows.csv").write_text("text,label\nx,a\ny,b\n")
    (tmp_path / "plain.csv").write_text("text\nx\ny\n")
    (tmp_path / "topic.jsonl").write_text('{"text": "x", "topic": "a"}\n')
    assert finetune_kind(tmp_path / "corpus") == "causal-lm"            # a folder of text files is a corpus
    assert finetune_kind(tmp_path / "rows.csv") == "classification"
    assert finetune_kind(tmp_path / "plain.csv") == "causal-lm"
    assert finetune_kind(tmp_path / "topic.jsonl", label_column="topic", label_given=True) == "classification"
    with pytest.raises(DataError, match="no 'label'"):
        finetune_kind(tmp_path / "topic.jsonl")
