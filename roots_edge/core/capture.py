"""What native libraries print: llama.cpp writes to fd 2 directly, around Python's `sys.stderr`."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def captured_stderr():
    """Collect what llama.cpp writes to stderr: its C++ side on fd 2 (the quantizer's log, cache notes) and
    llama-cpp-python's log callback through `sys.stderr`, which may not be fd 2 (a test runner's stream).

    Yields a list that holds the captured text once the block has run.
    """
    import io
    import os
    import sys
    import tempfile

    captured: list[str] = []
    sys.stderr.flush()
    saved, python_stderr, text = os.dup(2), sys.stderr, io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = text
        try:
            yield captured
        finally:
            sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace") + text.getvalue())
