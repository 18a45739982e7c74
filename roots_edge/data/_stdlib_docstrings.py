"""Print the standard library's docstrings as JSON lines. Run as `python -I -S this_file [--modules]`.

With `--modules` each line is `[module, docstring]`: the top-level module or package the docstring comes from
(`email`, `asyncio`, `tarfile`; a leading underscore dropped, so `_pydecimal` is `pydecimal`). The docstrings
and their order are the same either way.

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


def file_docstrings(path):
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return []
    return list(docstrings(tree))


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def module_of(path, root):
    top = os.path.relpath(path, root).split(os.sep)[0]
    return (top[:-3] if top.endswith(".py") else top).lstrip("_")


def main():
    root = sysconfig.get_paths()["stdlib"]
    files = list(source_files(root))
    with_modules = "--modules" in sys.argv[1:]
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    if workers > 1 and sys.platform == "linux":  # parsing dominates; order is kept, so the output is the same
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            per_file = pool.map(file_docstrings, files, chunksize=64)
    else:
        per_file = map(file_docstrings, files)
    seen = set()
    out = sys.stdout
    for path, docs in zip(files, per_file):
        for doc in docs:
            if len(doc) < MIN_CHARS or doc in seen:
                continue
            seen.add(doc)
            out.write(json.dumps([module_of(path, root), doc] if with_modules else doc) + "\n")


if __name__ == "__main__":
    main()
