"""The roots-edge runtime wrapper against each raw library doing the same work, in one process.

Run by `benchmarks/suite.py` as `python benchmarks/raw_loops.py JOB.json` (one backend per process); prints one
JSON line. Contenders are interleaved round by round (the order alternates, ABBA...), so a slow stretch of a
shared machine hits all of them alike. Never imports torch.

Decoders: N greedy tokens after the same prompt ids, `EdgeModel.generate_ids(ids, N, ignore_eos=True)` against
a loop written here with the library alone (ONNX Runtime `session.run` with the KV cache fed back; OpenVINO's
stateful infer request; llama.cpp `llama_decode`, and `llama_cpp.Llama.generate`). Each raw loop makes exactly
N model calls (prefill + N-1 single-token steps) and must return the same token ids as the wrapper.
Classifiers at batch 1: `EdgeModel.classify(text)` against tokenize + `session.run` / `infer` / `llama_encode`
+ softmax on the same text.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ORT_THREADS_NOTE = "same SessionOptions as the wrapper: intra-op threads, inter-op 1, allow_spinning 0"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _tokenizer(folder: Path):
    from roots_edge.runtimes.base import ENCODER_MAX_TOKENS, load_tokenizer

    tok = load_tokenizer(folder)
    tok.enable_truncation(ENCODER_MAX_TOKENS)  # as the wrapper encodes
    return tok


# ---------------------------------------------------------------------------------------------- ONNX Runtime
def _ort_session(folder: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])


def ort_decoder(folder: Path, threads: int) -> Callable[[list[int], int], list[int]]:
    sess = _ort_session(folder, threads)
    past = [i for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[past[0].type]
    kv_heads, head_dim = past[0].shape[1], past[0].shape[3]                      # (B, kv_heads, P, head_dim)
    names = [p.name for p in past]

    def run(ids: list[int], n: int) -> list[int]:
        cache = {name: np.zeros((1, kv_heads, 0, head_dim), dtype) for name in names}
        x, seen, out = np.asarray([ids], dtype=np.int64), 0, []
        for _ in range(n):
            t = x.shape[1]
            logits, *present = sess.run(None, {
                "input_ids": x,                                                       # (1, T)
                "attention_mask": np.ones((1, seen + t), dtype=np.int64),            # (1, P+T)
                "position_ids": np.arange(seen, seen + t, dtype=np.int64)[None],     # (1, T)
                **cache})
            token = int(logits[0, -1].argmax())
            out.append(token)
            cache, seen, x = dict(zip(names, present)), seen + t, np.asarray([[token]], dtype=np.int64)
        return out
    return run


def ort_classifier(folder: Path, threads: int) -> Callable[[str], np.ndarray]:
    sess, tok = _ort_session(folder, threads), _tokenizer(folder)
    wants_types = any(i.name == "token_type_ids" for i in sess.get_inputs())

    def run(text: str) -> np.ndarray:
        ids = np.asarray([tok.encode(text).ids], dtype=np.int64)                      # (1, T)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if wants_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        return _softmax(sess.run(["logits"], feed)[0][0].astype(np.float64))         # (C,)
    return run


# ---------------------------------------------------------------------------------------------- OpenVINO
def _ov_compiled(folder: Path, threads: int):
    import openvino as ov

    core = ov.Core()
    props = {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32", "INFERENCE_NUM_THREADS": threads}
    return core.compile_model(core.read_model(str(folder / "openvino_model.xml")), "CPU", props)


def ov_decoder(folder: Path, threads: int) -> Callable[[list[int], int], list[int]]:
    request = _ov_compiled(folder, threads).create_infer_request()
    beam = np.zeros(1, dtype=np.int32)

    def run(ids: list[int], n: int) -> list[int]:
        request.reset_state()
        x, seen, out = np.asarray([ids], dtype=np.int64), 0, []
        for _ in range(n):
            t = x.shape[1]
            request.start_async({"input_ids": x,                                               # (1, T)
                                 "attention_mask": np.ones((1, seen + t), dtype=np.int64),   # (1, P+T)
                                 "position_ids": np.arange(seen, seen + t, dtype=np.int64)[None],
                                 "beam_idx": beam})
            request.wait()
            token = int(request.get_tensor("logits").data[0, -1].argmax())
            out.append(token)
            seen, x = seen + t, np.asarray([[token]], dtype=np.int64)
        return out
    return run


def ov_classifier(folder: Path, threads: int) -> Callable[[str], np.ndarray]:
    compiled = _ov_compiled(folder, threads)
    request, tok, out = compiled.create_infer_request(), _tokenizer(folder), compiled.output(0)
    wants_types = any(p.get_any_name() == "token_type_ids" for p in compiled.inputs)

    def run(text: str) -> np.ndarray:
        ids = np.asarray([tok.encode(text).ids], dtype=np.int64)                      # (1, T)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if wants_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        return _softmax(request.infer(feed)[out][0].astype(np.float64))               # (C,)
    return run


# ---------------------------------------------------------------------------------------------- llama.cpp
def _llama(path: Path, threads: int, embedding: bool = False):
    import llama_cpp

    gguf = next(path.glob("*.gguf")) if path.is_dir() else path
    # the same context settings as the wrapper: the model's own context, one batch for the prompt, f32 KV cache
    return llama_cpp.Llama(str(gguf), n_ctx=0, n_batch=4096, n_ubatch=4096, n_threads=threads,
                           n_threads_batch=threads, embedding=embedding, verbose=False,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)


def llama_decoder(path: Path, threads: int) -> dict[str, Callable[[list[int], int], list[int]]]:
    """Two raw contenders on one `Llama`: the C API's `llama_decode` loop, and `Llama.generate` (greedy)."""
    import llama_cpp

    llm = _llama(path, threads)
    n_vocab, batch = llm.n_vocab(), llama_cpp.llama_batch_init(llm.n_batch, 0, 1)

    def decode_loop(ids: list[int], n: int) -> list[int]:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        feed, seen, out = list(ids), 0, []
        for _ in range(n):
            for j, tok in enumerate(feed):
                batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.seq_id[j][0] = tok, seen + j, 1, 0
                batch.logits[j] = j == len(feed) - 1
            batch.n_tokens = len(feed)
            if llama_cpp.llama_decode(llm.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            token = int(logits.argmax())
            out.append(token)
            seen, feed = seen + len(feed), [token]
        return out

    def generate(ids: list[int], n: int) -> list[int]:
        llm.reset()  # n_tokens = 0: no prompt-prefix reuse, the prompt is evaluated again
        out = []
        for token in llm.generate(ids, temp=0.0, reset=True):
            out.append(int(token))
            if len(out) == n:
                break
        return out
    return {"raw llama_decode": decode_loop, "raw Llama.generate": generate}


def llama_classifier(path: Path, threads: int) -> Callable[[str], np.ndarray]:
    import llama_cpp

    from roots_edge.runtimes.base import ENCODER_MAX_TOKENS

    llm = _llama(path, threads, embedding=True)
    n_cls = llama_cpp.llama_model_n_cls_out(llm.model)
    batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)

    def run(text: str) -> np.ndarray:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)[:ENCODER_MAX_TOKENS]
        for j, tok in enumerate(ids):
            batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.seq_id[j][0], batch.logits[j] = tok, j, 1, 0, True
        batch.n_tokens = len(ids)
        memory = llama_cpp.llama_get_memory(llm.ctx)
        if memory:  # an encoder usually has none
            llama_cpp.llama_memory_clear(memory, True)
        if llama_cpp.llama_encode(llm.ctx, batch) != 0:
            raise RuntimeError("llama_encode failed")
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(llm.ctx, 0), shape=(n_cls,))
        return _softmax(logits.astype(np.float64))                                     # (C,)
    return run


DECODERS = {"onnxruntime": ort_decoder, "openvino": ov_decoder, "llamacpp": llama_decoder}
CLASSIFIERS = {"onnxruntime": ort_classifier, "openvino": ov_classifier, "llamacpp": llama_classifier}


# ---------------------------------------------------------------------------------------------- the race
def race(contenders: dict[str, Callable[[], object]], rounds: int, warmup: int, budget_s: float = float("inf"),
         progress=None) -> dict:
    """Seconds of each contender per round, interleaved (the order alternates every round). Stops early, after
    at least 3 rounds, once `budget_s` is spent (a contended machine can slow some libraries 100x)."""
    names = list(contenders)
    outputs = {name: fn() for name, fn in contenders.items() for _ in range(max(1, warmup))}
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(rounds):
        if r >= 3 and time.perf_counter() - start > budget_s:
            break
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t)
        if progress:
            progress()
    return {"times_s": times, "outputs": outputs}


def main(job_path: str) -> None:
    from roots_edge.runtimes import load

    job = json.loads(Path(job_path).read_text())
    path, threads, backend = Path(job["path"]), int(job["threads"]), job["backend"]
    wrapper = load(path, device="cpu", threads=threads, exact=True)   # f32 KV cache, as every raw loop keeps it
    if job["kind"] == "decoder":
        ids, n = job["ids"], int(job["n"])
        raw = DECODERS[backend](path, threads)
        raw = raw if isinstance(raw, dict) else {"raw": raw}
        contenders = {"wrapper": lambda: wrapper.generate_ids(ids, n, ignore_eos=True),
                      **{name: (lambda fn=fn: fn(ids, n)) for name, fn in raw.items()}}
    else:
        text, inner = job["text"], int(job["inner"])
        raw_fn = CLASSIFIERS[backend](path, threads)
        labels = wrapper.backend.labels

        def wrapped():
            for _ in range(inner):
                p = wrapper.classify(text)
            return [p["scores"][lab] for lab in labels]

        def raw_run():
            for _ in range(inner):
                p = raw_fn(text)
            return p.tolist()
        contenders = {"wrapper": wrapped, "raw": raw_run}
    result = race(contenders, int(job["rounds"]), int(job.get("warmup", 1)), float(job.get("budget_s", "inf")),
                  progress=lambda: print("round", flush=True, file=sys.stderr))
    ref = result["outputs"]["wrapper"]
    same = {name: (out == ref if job["kind"] == "decoder" else bool(np.allclose(out, ref, atol=1e-4)))
            for name, out in result["outputs"].items()}
    per_call = int(job["n"]) if job["kind"] == "decoder" else int(job["inner"])
    print(json.dumps({"times_s": result["times_s"], "same_output": same, "calls_per_run": per_call,
                      "tokens": ref if job["kind"] == "decoder" else None}))


if __name__ == "__main__":
    main(sys.argv[1])
