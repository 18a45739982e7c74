"""One error family: every failure roots-edge raises on purpose is a RootsEdgeError, and the CLI prints it as
one line without a traceback (anything else is a bug and keeps its traceback)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from roots_edge.cli import main
from roots_edge.core.errors import RootsEdgeError


def test_runtime_errors_belong_to_the_family():
    from roots_edge.runtimes.base import RuntimeLoadError, TextInputError
    from roots_edge.runtimes.bench import BenchError
    from roots_edge.runtimes.devices import DeviceError
    from roots_edge.runtimes.generation import ContextOverflowError
    from roots_edge.runtimes.sampling import GenerationConfig

    for cls in (RuntimeLoadError, TextInputError, BenchError, DeviceError, ContextOverflowError):
        assert issubclass(cls, RootsEdgeError), cls
    assert issubclass(ContextOverflowError, ValueError) and issubclass(TextInputError, ValueError)  # as before
    with pytest.raises(RootsEdgeError, match="got temperature -1"):
        GenerationConfig(8, temperature=-1)


def test_cli_prints_them_as_one_line(tiny_llama, tmp_path):
    r = CliRunner().invoke(main, ["run", str(tmp_path / "missing"), "-p", "Return the"])
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0
    r = CliRunner().invoke(main, ["run", str(tiny_llama), "-p", "Return the", "--temperature", "-1"])
    assert r.exit_code == 1 and "temperature >= 0" in r.output and r.output.strip().count("\n") == 0


def test_a_missing_backend_library_names_the_extra(tmp_path, monkeypatch):
    import roots_edge.runtimes as runtimes
    from roots_edge.formats.gguf import GGUF_MAGIC
    from roots_edge.runtimes.base import RuntimeLoadError

    def needs_llama_cpp(self, *a, **kw):          # what opening a GGUF does where llama-cpp-python is missing
        raise ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")

    model = tmp_path / "m.gguf"
    model.write_bytes(GGUF_MAGIC + bytes(64))
    monkeypatch.setattr(runtimes.backend_class("gguf"), "__init__", needs_llama_cpp)
    with pytest.raises(RuntimeLoadError, match=r"pip install 'roots-edge\[gguf\]'"):
        runtimes.load(model)
