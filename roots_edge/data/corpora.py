"""Text data: the embedded default corpus, user corpora, labeled rows, and a stable split."""
from __future__ import annotations

import csv
import functools
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from roots_edge.core.errors import DataError
from roots_edge.core.text import unicode_problem

VAL_PER_MILLE = 50  # 5% of documents go to validation, chosen by content hash (stable across runs)


@dataclass
class Corpus:
    """Documents split into train and validation, plus where they came from."""

    train: list[str]
    val: list[str]
    source: str
    sha256: str
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_documents(cls, docs: Sequence[str], source: str, **extra) -> "Corpus":
        """Split `docs` by content hash (stable across runs and orderings) and fingerprint them."""
        train, val = _hash_split(docs)
        return cls(train, val, source=source, sha256=_digest(docs), extra=extra)

    @property
    def documents(self) -> list[str]:
        """Every document, train then validation (for text that is evaluated or finetuned on whole)."""
        return self.train + self.val

    @property
    def n_chars(self) -> int:
        return sum(map(len, self.train)) + sum(map(len, self.val))


def _hash_split(docs: Sequence[str]) -> tuple[list[str], list[str]]:
    train, val = [], []
    for doc in docs:
        bucket = int.from_bytes(hashlib.sha1(doc.encode("utf-8")).digest()[:4], "little") % 1000
        (val if bucket < VAL_PER_MILLE else train).append(doc)
    if not val and len(train) > 1:  # tiny corpora: keep at least one validation document
        val.append(train.pop())
    return train, val


def _digest(docs: Sequence[str]) -> str:
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def _stdlib_lines(modules: bool) -> list:
    script = Path(__file__).with_name("_stdlib_docstrings.py")
    proc = subprocess.run([sys.executable, "-I", "-S", str(script), *(["--modules"] if modules else [])],
                          capture_output=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise DataError(f"gathering the standard-library docstrings failed: {proc.stderr.decode()[-500:]}")
    return [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines() if line]


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> Corpus:
    """The docstrings of this Python's standard library, gathered in an isolated subprocess (once per process)."""
    docs = _stdlib_lines(False)
    if not docs:
        raise DataError("the standard library yielded no docstrings; pass your own corpus with --data")
    version = ".".join(map(str, sys.version_info[:3]))
    return Corpus.from_documents(docs, f"stdlib-docstrings (Python {version})", python=version, documents=len(docs))


TOPICS_MIN_PER_CLASS = 60   # a module with fewer docstrings is left out of the topic set
TOPICS_TEST_PER_MILLE = 200  # 20% of the examples, chosen by content hash, are the test split


@functools.lru_cache(maxsize=1)
def stdlib_topics() -> tuple["Labeled", "Labeled"]:
    """(train, test): a topic-classification set on every machine. Each standard-library docstring is labeled
    with the module or package it comes from (`email`, `asyncio`, `tarfile`, ...); modules with at least
    `TOPICS_MIN_PER_CLASS` docstrings are the classes (23 classes and 3,239 examples on Python 3.11.7). The
    split is by content hash, so it does not depend on the order of the files or on the run."""
    rows = _stdlib_lines(True)
    counts: dict[str, int] = {}
    for module, _ in rows:
        counts[module] = counts.get(module, 0) + 1
    keep = {m for m, n in counts.items() if n >= TOPICS_MIN_PER_CLASS}
    if len(keep) < 2:
        raise DataError("this Python's standard library gives fewer than two modules with "
                        f"{TOPICS_MIN_PER_CLASS} docstrings; give a labeled --data file instead")
    train, test = Labeled([], []), Labeled([], [])
    for module, doc in rows:
        if module in keep:
            bucket = int.from_bytes(hashlib.sha1(doc.encode("utf-8")).digest()[:4], "little") % 1000
            part = test if bucket < TOPICS_TEST_PER_MILLE else train
            part.texts.append(doc)
            part.labels.append(module)
    return train, test


def read_text(path: Path) -> str:
    """A user's text file as UTF-8 (a leading BOM is dropped); any other encoding is a DataError naming the
    file, the line, the character and the byte, and the fix (every data file is read here)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8-sig")) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text: character {column} is byte 0x{data[exc.start]:02x}; save "
                        f"the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`") from None


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[dict]]:
    """(columns, rows) of a CSV/TSV file read as UTF-8."""
    import io

    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    if not reader.fieldnames:
        raise DataError(f"{path} is empty: expected a header row naming the columns (e.g. text,label), then rows")
    return list(reader.fieldnames), rows


def _jsonl_rows(path: Path) -> list[dict]:
    rows = []
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: each JSONL row must be an object like {{\"text\": ...}}, not "
                            f"{type(row).__name__}")
        for key, value in row.items():        # valid UTF-8 still decodes "\ud800" to half a character
            problem = unicode_problem(value, escaped_bytes=False) if isinstance(value, str) else None
            if problem:
                raise DataError(f"{path}:{i}: field {ascii(key)} is not valid Unicode: {problem}, written as a "
                                f"JSON \\u escape; write the character itself, or both halves of its pair")
        rows.append(row)
    return rows


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _read_docs(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = _jsonl_rows(path)
        for i, row in enumerate(rows, 1):
            if "text" not in row:
                raise DataError(f"{path}: JSONL row {i} has no 'text' field (fields: {sorted(row)[:8]})")
        return [str(row["text"]) for row in rows]
    if suffix in (".csv", ".tsv"):
        names, rows = _csv_rows(path, _delimiter(path))
        if "text" not in names:
            raise DataError(f"{path}: a CSV corpus needs a 'text' column; found {names}")
        return [row["text"] or "" for row in rows]
    # plain text: paragraphs separated by blank lines are documents
    return [p.strip() for p in read_text(path).split("\n\n")]


def read_corpus(paths: Sequence[str | Path]) -> Corpus:
    """Read text files (.txt, paragraphs), JSONL (`text` field) or CSV (`text` column), or folders of them."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix.lower() in {".txt", ".md", ".jsonl", ".csv"})
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"corpus path {p} does not exist; pass text files (.txt), JSONL or CSV")
    docs = [d for f in files for d in _read_docs(f) if d and d.strip()]
    if not docs:
        raise DataError(f"the corpus {', '.join(map(str, paths))} holds no text; "
                        "give a .txt file, JSONL rows with 'text' or a CSV with a 'text' column")
    return Corpus.from_documents(docs, ", ".join(map(str, paths)), documents=len(docs))


# ---------------------------------------------------------------------------- labeled data

@dataclass
class Labeled:
    texts: list[str]
    labels: list[str]

    @property
    def label_names(self) -> list[str]:
        return sorted(set(self.labels), key=_label_key)


def _label_key(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def check_labeled(texts: Sequence[str], labels: Sequence) -> Labeled:
    """Validate `texts, labels` given in Python (labels may be ints or names)."""
    texts, labels = list(texts), list(labels)
    if isinstance(texts, str):
        raise DataError("texts must be a list of strings, not one string")
    if len(texts) != len(labels):
        raise DataError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
    if not texts:
        raise DataError("no training examples: give at least two texts with two different labels")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"text #{i} is empty or not a string; every example needs text")
    names = [str(lab) for lab in labels]
    if len(set(names)) < 2:
        raise DataError(f"all {len(names)} examples have the label {names[0]!r}; "
                        "classification needs at least two classes")
    return Labeled(texts, names)


def read_labeled(path: str | Path, text_column: str = "text", label_column: str = "label") -> Labeled:
    """Rows of `text,label` from CSV or JSONL."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labeled data file {path} does not exist; give a CSV or JSONL with "
                        f"'{text_column}' and '{label_column}'")
    if path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path)
    elif path.suffix.lower() in {".csv", ".tsv"}:
        rows = _csv_rows(path, _delimiter(path))[1]
    else:
        raise DataError(f"{path}: labeled data must be .csv, .tsv or .jsonl")
    if not rows:
        raise DataError(f"{path} holds no rows")
    for col in (text_column, label_column):
        missing = [i for i, r in enumerate(rows, 1) if col not in r or r[col] is None]
        if missing:
            raise DataError(f"{path}: column '{col}' is missing (first in row {missing[0]}); "
                            f"columns found: {sorted(rows[0])}. Use --text-column / --label-column.")
    return check_labeled([str(r[text_column]) for r in rows], [r[label_column] for r in rows])


def columns(path: str | Path) -> list[str] | None:
    """The column (field) names of a CSV/TSV/JSONL file (its header, or its first row's fields); None for
    other files (plain text has no columns)."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(path)
        return sorted(rows[0]) if rows else []
    if path.suffix.lower() in {".csv", ".tsv"}:
        return _csv_rows(path, _delimiter(path))[0]
    return None


def finetune_kind(path: str | Path, text_column: str = "text", label_column: str = "label",
                  label_given: bool = False) -> str:
    """"classification" or "causal-lm" for `finetune --data path`, decided from the file's columns, and a clear
    error where the intent is ambiguous: a named --label-column that is missing, or a table with extra columns
    but no label column (silently finetuning a language model on it would ignore the user's labels)."""
    path = Path(path)
    if path.is_dir() and not label_given:
        return "causal-lm"                  # a folder of text files: a corpus (read_corpus walks it)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist or is not a file; give a CSV or JSONL with "
                        f"'{text_column}' (and '{label_column}' for a classifier), or text files for a language model")
    found = columns(path)
    if found is None:
        if label_given:
            raise DataError(f"{path} is plain text: it has no columns, so --label-column {label_column!r} cannot "
                            f"apply; give a CSV/JSONL with '{text_column}' and '{label_column}' columns")
        return "causal-lm"
    if label_column in found:
        return "classification"
    if label_given:
        raise DataError(f"{path} has no column {label_column!r} (named by --label-column); its columns are "
                        f"{found}")
    extra = [c for c in found if c != text_column]
    if extra:
        raise DataError(f"{path} has columns {found} but no {label_column!r}: to train a classifier, name the label "
                        f"column with --label-column (one of {extra}); to finetune the language model on the "
                        f"text, give a file with only a {text_column!r} column")
    return "causal-lm"


def looks_labeled(path: str | Path, label_column: str = "label") -> bool:
    """True when a CSV/JSONL file carries a label column (then finetuning means classification)."""
    return label_column in (columns(path) or [])


# ---------------------------------------------------------------------------- data by name or by file

# Data on every machine, by name: "stdlib-docstrings" (text) and "stdlib-topics" (text,label rows, and their texts
# as text). Everything else a user gives is a file or a folder.
TEXT_NAMES = ("stdlib-docstrings", "stdlib-topics")
LABELED_NAMES = ("stdlib-topics",)


def text_corpus(sources: str | Path | Sequence[str | Path]) -> Corpus:
    """Text for pretraining, finetuning, distillation, calibration or held-out evaluation: a name in
    `TEXT_NAMES` or text files (.txt, JSONL, CSV) and folders of them."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if [str(s) for s in sources] == ["stdlib-docstrings"]:
        return stdlib_docstrings()
    if [str(s) for s in sources] == ["stdlib-topics"]:
        texts = stdlib_topics()[0].texts      # the topic set's training rows, whole: its test rows stay unseen
        return Corpus(list(texts), [], source="stdlib-topics", sha256=_digest(texts))
    named = [str(s) for s in sources if str(s) in TEXT_NAMES]
    if named:
        raise DataError(f"{named[0]} is built-in data: give it alone, not with files ({', '.join(map(str, sources))})")
    return read_corpus(sources)


def labeled_set(source: str | Path, text_column: str = "text", label_column: str = "label"
                ) -> tuple[Labeled, Labeled | None]:
    """(train, test) labeled rows: the topic set and its own test split, or a CSV / JSONL file (no test split)."""
    if str(source) == "stdlib-topics":
        return stdlib_topics()
    return read_labeled(source, text_column, label_column), None


def missing_source(source, labeled: bool = False) -> str | None:
    """Why `source` cannot be data (a check before any work), or None when it names built-in data or an
    existing path."""
    names = LABELED_NAMES if labeled else TEXT_NAMES
    if isinstance(source, str) and (source in names or Path(source).exists()):
        return None
    return f"{source!r} is neither a file nor one of {list(names)}"
