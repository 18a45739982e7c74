"""llama.cpp's own Hugging Face -> GGUF converter, run by the tests that compare our GGUF files with its files.

`make test` unpacks `convert_hf_to_gguf.py`, its `conversion` package and its gguf-py from the sdist of the pinned
llama-cpp-python (the llama.cpp the runtime runs) into the venv, points ROOTS_EDGE_LLAMA_CONVERTER at it and sets
ROOTS_EDGE_NEED_CONVERTER: there a missing or stale converter fails those tests; a bare `pytest` skips them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The converter with one stand-in at most: `get_vocab_base_pre`, which names a BPE pre-tokenizer by hashing the ids a
# tokenizer gives a check text, against a table of published models. A tokenizer trained in a test is in no table,
# so its caller names the split it has. Everything else is the converter's own code, with its own gguf-py (the
# script puts its gguf-py/ ahead of site-packages itself unless NO_LOCAL_GGUF is set; here it goes first anyway).
_RUN = """
import runpy, sys
from pathlib import Path
script, pre = Path(sys.argv[1]), sys.argv[2]
sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
if pre:
    from conversion.base import TextModel
    TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [str(script), *sys.argv[3:]]
runpy.run_path(str(script), run_name="__main__")
"""


def converter_script() -> Path:
    """The unpacked convert_hf_to_gguf.py of the installed llama-cpp-python's version; skips (fails under
    `make test`) when it is missing or from another version, or sentencepiece is not installed."""
    from importlib.metadata import version
    from importlib.util import find_spec

    default = Path(sys.prefix) / "llama-converter" / "convert_hf_to_gguf.py"
    script = Path(os.environ.get("ROOTS_EDGE_LLAMA_CONVERTER") or default)
    stamp = script.parent / "VERSION"
    want = version("llama_cpp_python")
    have = stamp.read_text().strip() if stamp.is_file() else None
    if script.is_file() and have == want and find_spec("sentencepiece"):
        return script
    if not script.is_file() or have != want:
        found = ("is missing" if not script.is_file()
                 else f"comes from llama-cpp-python {have}, not the installed {want}")
        reason = (f"llama.cpp's converter {script} {found}; `make test` unpacks it from the llama-cpp-python sdist "
                  f"(the Makefile's llama-converter stamp)")
    else:
        reason = "llama.cpp's converter imports sentencepiece for every Llama; it is in pyproject's test extra"
    if os.environ.get("ROOTS_EDGE_NEED_CONVERTER"):
        pytest.fail(reason + ": run `make test`")
    pytest.skip(reason)


def convert(folder: Path, out: Path, outtype: str, pre_tokenizer: str | None = None) -> Path:
    """Run llama.cpp's converter on Hugging Face folder `folder`, writing `out` as `outtype` (f32, f16, ...)."""
    script = converter_script()
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    proc = subprocess.run([sys.executable, "-c", _RUN, str(script), pre_tokenizer or "", str(folder),
                           "--outtype", outtype, "--outfile", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    return out
