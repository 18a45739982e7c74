"""Print the standard library's docstrings as JSON lines. Run as `python -I -S this_file`.

Isolated (-I) and without site (-S) so that nothing in site-packages (setuptools' distutils shim,
say) can shadow a stdlib module: the corpus depends only on the Python version. Sources are parsed
with `ast`, never imported, so no module's import-time side effects run.
"""
import ast
import json
import os
import sys
import sysconfig

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
             "lib2to3", "turtledemo", "ensurepip", "venv", "tkinter", "idlelib", "pydoc_data"}
MIN_CHARS = 40


def docstrings(tree):
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield doc
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def main():
    root = sysconfig.get_paths()["stdlib"]
    seen = set()
    out = sys.stdout
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    tree = ast.parse(f.read(), filename=path)
            except (SyntaxError, ValueError, OSError):
                continue
            for doc in docstrings(tree):
                if len(doc) < MIN_CHARS or doc in seen:
                    continue
                seen.add(doc)
                out.write(json.dumps(doc) + "\n")


if __name__ == "__main__":
    main()
