"""Issue 23: text that is not valid Unicode, models without the head a verb needs, and calls on one model from
several threads — on every backend, through the Python API and the command a user would type.

Bad text is refused where it enters with a one-line TextInputError (DataError for data files) naming the
character; a verb the model's head cannot serve is a TaskError decided from its config before any forward pass;
a non-streaming call gives exactly what it gives alone, whatever other threads do with the same model.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SENTIMENT_TRAIN
from test_bad_inputs import data_file, private_cache  # noqa: F401  (private_cache: autouse, ROOTS_EDGE_HOME)

from roots_edge.cli import main
from roots_edge.core.errors import DataError, TaskError, TextInputError
from roots_edge.model import LanguageModel
from roots_edge.runtimes import load

PROMPT = "Return the"
ESCAPED = "Return \udcff\udcfe the"          # what Python makes of argv / stdin bytes b"Return \xff\xfe the"
SURROGATE = "Return \ud800 the"             # half a UTF-16 pair, as a JSON "\ud800" escape gives
BAD_TEXTS = [(ESCAPED, "character 8 is byte 0xff, which is not UTF-8"),
             (SURROGATE, "character 8 is a lone surrogate U+D800")]
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
BACKENDS = ("torch", "gguf", "onnx", "openvino")


@pytest.fixture(scope="module")
def decoders(tiny_llama, llama_exports, llama_onnx, llama_ir) -> dict[str, Path]:
    return {"torch": Path(tiny_llama), "gguf": llama_exports["gguf-f32"][0], "onnx": llama_onnx["fp32"][0],
            "openvino": llama_ir["fp32"][0]}


@pytest.fixture(scope="module")
def classifiers(tiny_bert_classifier, bert_exports, bert_onnx, bert_ir) -> dict[str, Path]:
    return {"torch": Path(tiny_bert_classifier), "gguf": bert_exports["gguf-f32"][0], "onnx": bert_onnx["fp32"][0],
            "openvino": bert_ir["fp32"][0]}


@pytest.fixture(scope="module")
def plain_bert(minilm_path, tmp_path_factory) -> Path:
    """A BERT encoder without a task head (architectures ["BertModel"], as all-MiniLM-L6-v2 ships), built from a
    transformers config and saved with save_pretrained."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("models") / "plain-bert"
    tok = AutoTokenizer.from_pretrained(minilm_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=256, architectures=["BertModel"])
    torch.manual_seed(0)
    BertModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def opened():
    """(path, exact) -> the loaded EdgeModel, opened once per module."""
    cache = {}

    def get(path: Path, exact: bool = False):
        if (path, exact) not in cache:
            cache[path, exact] = load(path, device="cpu", exact=exact)
        return cache[path, exact]
    return get


def one_line_error(args, words: str, **invoke):
    """The command exits 1 with `Error: ...words...` on one line and no traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args], **invoke)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    # (after a REPL's "you> " prompt, which piped input leaves without a newline)
    errors = [line[line.index("Error: "):] for line in result.output.splitlines() if "Error: " in line]
    assert len(errors) == 1 and words in errors[0], result.output
    return result


# --------------------------------------------------------------------------------- 1. text that is not Unicode
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_decoder_verb_refuses_text_that_is_not_unicode(decoders, opened, backend):
    model = opened(decoders[backend])
    verbs = {"generate": lambda t: model.generate(t, 2), "stream": lambda t: model.generate(t, 2, stream=True),
             "tokenize": model.tokenize, "logits": model.logits,
             "chat": lambda t: model.chat([{"role": "user", "content": t}], 2, chat_template=TEMPLATE)}
    for verb, call in verbs.items():
        for text, words in BAD_TEXTS:
            with pytest.raises(TextInputError) as raised:
                call(text)
            message = str(raised.value)
            assert words in message and "give UTF-8 text" in message and "\n" not in message, (verb, message)
    with pytest.raises(TextInputError, match="message 1's content is not valid Unicode: character 8 is byte 0xff"):
        model.chat([{"role": "user", "content": "hello"}, {"role": "assistant", "content": ESCAPED}],
                   chat_template=TEMPLATE)
    assert model.generate(PROMPT, 6) == "".join(model.generate(PROMPT, 6, stream=True))   # still answers


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_classifier_refuses_text_that_is_not_unicode(classifiers, opened, backend):
    model = opened(classifiers[backend])
    for text, words in BAD_TEXTS:
        for call in (lambda: model.classify(text), lambda: model.classify(["A fine film.", text]),
                     lambda: model.embed(text)):
            with pytest.raises(TextInputError, match=re.escape(words)):
                call()
    assert model.classify("A wonderful film.")["label"] in {"positive", "negative"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stop_string_that_is_not_unicode_is_refused(decoders, opened, backend):
    """It could never match the text (which is Unicode): refused like a prompt, before any token."""
    with pytest.raises(TextInputError, match="stop string 2 is not valid Unicode: character 1 is byte 0xff"):
        opened(decoders[backend]).generate(PROMPT, 2, stop=("\n", "\udcff"))
    one_line_error(["run", decoders[backend], "-p", PROMPT, "-n", "2", "--stop", "\udcff"],
                   "stop string 1 is not valid Unicode: character 1 is byte 0xff")


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_refuses_a_prompt_of_bytes_that_are_not_utf8(decoders, backend):
    one_line_error(["run", decoders[backend], "-p", ESCAPED, "-n", "2"],
                   "--prompt is not valid Unicode: character 8 is byte 0xff, which is not UTF-8")


@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_refuses_standard_input_that_is_not_utf8(decoders, backend):
    r = one_line_error(["chat", decoders[backend], "-n", "3"], "line 2 of standard input is not valid Unicode: "
                       "character 8 is byte 0xff", input=b"Return the value\nReturn \xff\xfe the\n")
    assert r.stdout.count("model> ") == 1                       # the first turn was answered
    one_line_error(["chat", decoders[backend], "--system", SURROGATE], "--system is not valid Unicode: character 8 "
                   "is a lone surrogate U+D800", input=b"hello\n")


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_refuses_arguments_and_files_that_are_not_utf8(classifiers, backend, tmp_path):
    one_line_error(["predict", classifiers[backend], "A fine film.", ESCAPED],
                   "TEXT 2 is not valid Unicode: character 8 is byte 0xff")
    lines = tmp_path / "texts.txt"
    lines.write_bytes("A fine film.\nA caf\xe9 film.\n".encode("latin-1"))
    one_line_error(["predict", classifiers[backend], "--file", lines],
                   f"{lines}:2: not UTF-8 text: character 6 is byte 0xe9; save the file as UTF-8")


def test_the_real_command_line_refuses_undecodable_argv_and_stdin(decoders):
    """Not CliRunner: a process whose argv and stdin hold bytes that are not UTF-8, under a UTF-8 locale (where
    Python decodes argv with surrogateescape and stdin strictly)."""
    exe = Path(sys.executable).with_name("roots-edge")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"}
    gguf = os.fsencode(decoders["gguf"])
    for args, stdin, words in ((["run", gguf, b"-p", b"Return \xff\xfe the"], b"", b"--prompt is not valid Unicode"),
                               (["chat", gguf, b"-n", b"2"], b"Return \xff\xfe the\n",
                                b"line 1 of standard input is not valid Unicode")):
        proc = subprocess.run([exe, *args], input=stdin, capture_output=True, env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert b"Traceback" not in proc.stderr and b"Traceback" not in proc.stdout
        errors = [line for line in proc.stderr.splitlines() if line.startswith(b"Error: ")]
        assert errors == [b"Error: " + words + b": character 8 is byte 0xff, which is not UTF-8; give UTF-8 text "
                          b"(convert it first, e.g. `iconv -f latin1 -t utf-8`)"], proc.stderr


def test_the_pytorch_api_refuses_text_that_is_not_unicode(tiny_llama, tiny_bert_classifier):
    lm, clf = LanguageModel.from_pretrained(tiny_llama), LanguageModel.from_pretrained(tiny_bert_classifier)
    for text, words in BAD_TEXTS:
        for call in (lambda: lm.generate(text, 2), lambda: lm.chat([{"role": "user", "content": text}],
                                                                    chat_template=TEMPLATE),
                     lambda: clf.predict(text), lambda: clf.predict(["A fine film.", text]), lambda: clf.embed(text)):
            with pytest.raises(TextInputError, match=re.escape(words)):
                call()
    with pytest.raises(TextInputError, match="empty"):
        lm.generate("   ")
    one_line_error(["generate", ESCAPED, "-m", tiny_llama, "-n", "2"], "character 8 is byte 0xff")


@pytest.mark.parametrize("name, content, words", [
    ("rows.jsonl", '{"text": "fine", "label": "a"}\n{"text": "x \\ud800 y", "label": "b"}\n',
     "rows.jsonl:2: field 'text' is not valid Unicode: character 3 is a lone surrogate U+D800"),
    ("rows.jsonl", '{"text": "fine", "label": "a"}\n{"text": "ok", "label": "\\udcff"}\n',
     "rows.jsonl:2: field 'label' is not valid Unicode: character 1 is a lone surrogate U+DCFF"),
    ("corpus.jsonl", '{"text": "fine"}\n\n{"text": "\\udc80 bad"}\n', "corpus.jsonl:3: field 'text'"),
    ("rows.csv", "text,label\nfine,a\ncaf\xe9 ok,b\n".encode("latin-1"),
     "rows.csv:3: not UTF-8 text: character 4 is byte 0xe9; save the file as UTF-8"),
    ("notes.txt", "Line one.\n\n\xff\xfe two\n".encode("latin-1"),
     "notes.txt:3: not UTF-8 text: character 1 is byte 0xff"),
])
def test_data_files_that_are_not_unicode_name_the_line(tiny_llama, tmp_path, name, content, words):
    check, args = data_file(name, content)({"model": Path(tiny_llama)}, tmp_path)
    with pytest.raises(DataError, match=re.escape(words)):
        check()
    one_line_error(args, words)


# ------------------------------------------------------------------------ 2. a model without the head a verb needs
TASK_CASES = [
    ("encoder", "run", "is an embedding model: it cannot generate (use embed())"),
    ("encoder", "predict", "is an embedding model: it cannot classify (use embed()); a classifier comes from "
                           "`roots-edge finetune MODEL --data rows.csv`"),
    ("clf", "run", "is a classifier: it cannot generate (use predict / classify())"),
    ("decoder", "predict", "is a text generator (causal LM): it cannot classify (use run / generate()); a "
                           "classifier comes from `roots-edge finetune MODEL --data rows.csv`"),
]


@pytest.mark.parametrize("kind, verb, words", TASK_CASES, ids=[f"{k}-{v}" for k, v, _ in TASK_CASES])
def test_a_pytorch_folder_without_the_head_a_verb_needs_is_a_task_error(plain_bert, tiny_bert_classifier,
                                                                        tiny_llama, opened, kind, verb, words):
    folder = {"encoder": plain_bert, "clf": Path(tiny_bert_classifier), "decoder": Path(tiny_llama)}[kind]
    model = opened(folder)
    call = {"run": lambda: model.generate(PROMPT, 2), "predict": lambda: model.classify("A fine film.")}[verb]
    with pytest.raises(TaskError) as raised:
        call()
    assert str(raised.value) == f"{folder} {words}"
    args = {"run": ["run", folder, "-p", PROMPT, "-n", "2"], "predict": ["predict", folder, "A fine film."]}[verb]
    r = one_line_error(args, words)
    assert PROMPT not in r.stdout                   # nothing was printed as if generation had begun


def test_every_verb_of_a_plain_encoder_folder_is_decided_by_its_config(plain_bert, opened):
    model = opened(plain_bert)
    assert model.info()["task"] == "embedding"
    for call, verb in ((lambda: model.generate(PROMPT, 2, stream=True), "generate"),
                       (lambda: model.chat("hello"), "chat"), (lambda: model.generate_ids([1, 2], 2), "generate"),
                       (lambda: model.logits(PROMPT), "give next-token logits")):
        with pytest.raises(TaskError, match=f"is an embedding model: it cannot {verb} "):
            call()
    vectors = model.embed(["A fine film.", "An awful film."])          # what it can do, it does
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_language_model_refuses_verbs_its_head_lacks_and_the_seed_api_still_works(plain_bert, tiny_llama,
                                                                                  tiny_bert_classifier):
    decoder, encoder = LanguageModel.from_pretrained(tiny_llama), LanguageModel.from_pretrained(plain_bert)
    with pytest.raises(TaskError) as raised:
        decoder.predict("A fine film.")
    assert str(raised.value) == ("LlamaForCausalLM has no classification head: it is a text generator (causal LM) "
                                 "and cannot classify (use generate()); train a classifier first: "
                                 "model.finetune(texts, labels)")
    with pytest.raises(TaskError, match="BertModel is not a causal LM: it is an embedding model .* cannot generate"):
        encoder.generate(PROMPT)
    with pytest.raises(TaskError, match="BertModel has no classification head: it is an embedding model"):
        encoder.predict("A fine film.")
    one_line_error(["generate", PROMPT, "-m", plain_bert], "BertModel is not a causal LM")
    # the seed API: from_pretrained, finetune(texts, labels), predict
    texts, labels = zip(*SENTIMENT_TRAIN)
    metrics = encoder.finetune(list(texts), list(labels), progress=False, epochs=3, lr=5e-3, val_fraction=0.0)
    assert encoder.spec.task == "classification" and encoder.spec.labels == ["negative", "positive"]
    predicted = [encoder.predict(t)["label"] for t in texts]          # the runtime follows the new head
    assert np.mean([p == label for p, label in zip(predicted, labels)]) == metrics["train"]["accuracy"]
    clf, edge = LanguageModel.from_pretrained(tiny_bert_classifier), load(tiny_bert_classifier)
    ours, theirs = clf.predict("A wonderful film."), edge.classify("A wonderful film.")
    assert ours["label"] == theirs["label"] and ours["score"] == pytest.approx(theirs["score"], abs=1e-6)


# --------------------------------------------------------------------------------- 3. one model, several threads
THREADED = ("gguf", "onnx", "openvino")
PROMPTS = ["Return the number of", "The default value is", "Raise ValueError if the", "If the file does not"]
THREADS, CALLS = 4, 10


def call_of(model, thread: int, i: int):
    """The i-th call of a thread: sampled text, greedy text, a chat reply or greedy ids, each with its own prompt
    and seed."""
    prompt, seed = PROMPTS[(thread + i) % len(PROMPTS)], 1000 * thread + i
    kind = i % 4
    if kind == 0:
        return model.generate(prompt, 16, temperature=1.2, seed=seed)
    if kind == 1:
        return model.generate(prompt, 16)
    if kind == 2:
        return model.chat(prompt, 8, chat_template=TEMPLATE, temperature=0.9, seed=seed)
    return model.generate_ids(model.tokenize(prompt), 16)


def counting_tokens(backend) -> list[int]:
    """[tokens the backend has computed so far]: a pass-through around its real `forward` (undone by
    `del backend.forward`)."""
    fed, forward = [0], backend.forward

    def counted(ids):
        fed[0] += np.asarray(ids).size
        return forward(ids)
    backend.forward = counted
    return fed


@pytest.mark.parametrize("backend", THREADED)
def test_calls_from_several_threads_give_exactly_the_serial_answers(decoders, opened, backend):
    """Each call runs whole: the same text as alone, and no step of one call replays another's prompt (the
    backend computes as many tokens as the serial calls did)."""
    model = opened(decoders[backend])
    fed = counting_tokens(model.backend)
    try:
        serial = {(t, i): call_of(model, t, i) for t in range(THREADS) for i in range(CALLS)}
        serial_tokens, fed[0] = fed[0], 0
        threaded, start = {}, threading.Barrier(THREADS)

        def work(t):
            start.wait()
            for i in range(CALLS):
                threaded[t, i] = call_of(model, t, i)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
    finally:
        del model.backend.forward
    assert len({str(v) for v in serial.values()}) > len(PROMPTS)        # the calls differ from each other
    assert threaded == serial
    assert fed[0] == serial_tokens


@pytest.mark.parametrize("backend", THREADED)
def test_a_stream_beside_whole_calls_finishes_and_the_whole_calls_are_exact(decoders, opened, backend):
    model = opened(decoders[backend], exact=True)
    alone = model.generate(PROMPTS[0], 16)
    expected = model.generate(PROMPTS[1], 12, temperature=0.9, seed=7)
    # the same thread: a whole call between every two pieces of the stream
    pieces, beside = [], []
    for piece in model.generate(PROMPTS[0], 16, stream=True):
        pieces.append(piece)
        beside.append(model.generate(PROMPTS[1], 12, temperature=0.9, seed=7))
    assert len(pieces) > 2 and beside == [expected] * len(pieces)
    assert "".join(pieces) == alone
    # another thread streams, pausing between pieces, while this one makes whole calls
    streamed, done = [], threading.Event()

    def stream():
        for piece in model.generate(PROMPTS[0], 16, stream=True):
            streamed.append(piece)
            done.wait(0.002)
        done.set()

    worker = threading.Thread(target=stream)
    worker.start()
    beside = []
    while not done.is_set() or not beside:
        beside.append(model.generate(PROMPTS[1], 12, temperature=0.9, seed=7))
    worker.join(timeout=60)
    assert not worker.is_alive() and "".join(streamed) == alone
    assert beside == [expected] * len(beside)
