"""A stream holds the model's lock only while it computes a piece: a paused stream blocks nobody (not even
its own thread), and a stream whose KV cache another call used in between feeds its tokens again and goes
on with the same text."""
import threading

import pytest

from roots_edge.runtimes import load

PROMPT = "Return the number of"


@pytest.fixture(scope="module", params=["torch", "gguf-f32", "onnx-fp32"])
def model(request, tiny_llama, llama_exports, llama_onnx):
    if request.param == "torch":
        return load(tiny_llama, device="cpu", exact=True)
    if request.param == "gguf-f32":
        return load(llama_exports["gguf-f32"][0], device="cpu", exact=True)
    return load(llama_onnx["fp32"][0], device="cpu", exact=True)


def test_a_paused_stream_lets_the_same_thread_call_again_and_resumes_unchanged(model):
    whole = model.generate(PROMPT, 12)
    stream = model.generate(PROMPT, 12, stream=True)
    first = next(stream)
    other = model.generate("If the value is", 6)           # deadlocked before: the stream held the lock
    assert other == model.generate("If the value is", 6)
    assert first + "".join(stream) == whole


def test_a_paused_stream_lets_another_thread_run(model):
    stream = model.generate(PROMPT, 8, stream=True)
    next(stream)
    done = []
    worker = threading.Thread(target=lambda: done.append(model.tokenize("a short text")))
    worker.start()
    worker.join(timeout=30)
    assert done and not worker.is_alive()
    list(stream)


def test_two_interleaved_streams_each_give_their_own_text(model):
    a_whole, b_whole = model.generate(PROMPT, 10), model.generate("If the value is", 10)
    a, b = model.generate(PROMPT, 10, stream=True), model.generate("If the value is", 10, stream=True)
    got = {"a": "", "b": ""}
    for _ in range(20):
        for key, it in (("a", a), ("b", b)):
            got[key] += next(it, "")
    assert got == {"a": a_whole, "b": b_whole}
