"""Deployment bundles (roots_edge/deploy/bundle.py): contents, pins, refusals, and an offline install that runs.

The wheels come from the package registry (pip's cache after the first run); the emulated Raspberry Pi is
`make pi-check`, not a test.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roots_edge.deploy.bundle import PLATFORMS, BundleError, bundle, predicted_decode

X86 = os.uname().machine == "x86_64"


def _wheel_tags(name: str) -> tuple[str, str, str]:
    parts = name[:-len(".whl")].split("-")
    return parts[-3], parts[-2], parts[-1]


def _compatible(wheel: str, python: str, machine: str, libc: str = "manylinux") -> bool:
    py, abi, plat = _wheel_tags(wheel)
    cp = "cp" + python.replace(".", "")
    py_ok = any(t in ("py3", "py2", cp) or (t.startswith("cp3") and abi == "abi3" and int(t[3:]) <= int(cp[3:]))
                for t in py.split("."))
    plat_ok = all(p == "any" or (p.endswith(machine) and (p.startswith(libc) or p.startswith("linux_")))
                  for p in plat.split("."))
    return py_ok and plat_ok and abi in ("none", "abi3", cp)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_platform_and_bad_artifacts_are_refused(tmp_path, tiny_llama, llama_exports):
    with pytest.raises(BundleError, match="supported: rpi5, rpi4, linux-aarch64, linux-x86_64, macos-arm64"):
        bundle([tmp_path], "rpi9", tmp_path / "b")
    with pytest.raises(BundleError, match="does not exist"):
        bundle([tmp_path / "nope"], "rpi5", tmp_path / "b")
    with pytest.raises(BundleError, match="PyTorch model folder.*roots-edge export"):
        bundle([tiny_llama], "rpi5", tmp_path / "b")
    gguf = llama_exports["gguf-q8"][0]
    with pytest.raises(BundleError, match="GGUF artifact.*macos-arm64.*no macos-arm64 wheel"):
        bundle([gguf], "macos-arm64", tmp_path / "b")
    with pytest.raises(BundleError, match="--python must look like 3.11"):
        bundle([gguf], "rpi5", tmp_path / "b", python="eleven")
    (tmp_path / "taken").mkdir()
    with pytest.raises(BundleError, match="exists; pass --force"):
        bundle([gguf], "rpi5", tmp_path / "taken")
    assert not list(tmp_path.glob(".tmp-*")), "a refused bundle left a temporary folder"


def test_truncated_artifact_is_refused(tmp_path, llama_exports):
    broken = tmp_path / "q8"
    shutil.copytree(llama_exports["gguf-q8"][0], broken)
    gguf = next(broken.glob("*.gguf"))
    gguf.write_bytes(gguf.read_bytes()[:1000])
    with pytest.raises(BundleError, match="size differs from .*manifest.json; re-export"):
        bundle([broken], "linux-x86_64", tmp_path / "b")


def test_prediction_is_bandwidth_over_weight_bytes():
    assert predicted_decode(int(150e6), 6.0) == pytest.approx(40.0)
    assert PLATFORMS["rpi5"].bandwidth_gbs > PLATFORMS["rpi4"].bandwidth_gbs


def test_pi_bundle_holds_aarch64_wheels_for_python_311(tmp_path, bert_onnx):
    """An rpi4 bundle of an ONNX classifier: every wheel is for aarch64 Linux (or pure Python) and CPython 3.11,
    pinned by hash, and only the runtime that artifact needs is in it."""
    art = bert_onnx["int8"][0]
    info = bundle([art], "rpi4", tmp_path / "pi", measure=False, log=lambda *_: None)
    wheels = sorted((tmp_path / "pi" / "wheels").glob("*.whl"))
    names = {w.name.split("-")[0].lower() for w in wheels}
    assert {"roots_edge", "onnxruntime", "numpy", "tokenizers", "pip"} <= names
    assert not names & {"torch", "openvino", "llama_cpp_python", "transformers"}
    assert all(_compatible(w.name, "3.11", "aarch64") for w in wheels), [w.name for w in wheels]
    assert any(_wheel_tags(w.name)[2].endswith("aarch64") for w in wheels)
    assert info["python"] == "3.11" and info["platform"]["name"] == "rpi4"
    readme = (tmp_path / "pi" / "README.md").read_text()
    assert "Raspberry Pi 4" in readme and "./install.sh" in readme and "predict artifacts/int8" in readme


@pytest.mark.skipif(not X86, reason="installs and runs an x86-64 bundle")
def test_x86_bundle_installs_offline_and_runs_like_this_machine(tmp_path, llama_exports, bert_onnx):
    """A linux-x86_64 bundle of a GGUF decoder (llama.cpp packed from this machine's build) and an ONNX classifier:
    pins and checksums cover every file; ./install.sh builds a venv with pip's network off (--no-index,
    --isolated); ./run generates the same text and labels as this process; torch is not installed there."""
    from roots_edge.runtimes import load

    gguf, clf = llama_exports["gguf-q8"][0], bert_onnx["int8"][0]
    out = tmp_path / "b"
    info = bundle([gguf, clf], "linux-x86_64", out, log=lambda *_: None)

    lock = (out / "requirements.txt").read_text()
    wheels = sorted((out / "wheels").glob("*.whl"))
    for w in wheels:
        assert f"--hash=sha256:{_sha(w)}" in lock, w.name
        assert _compatible(w.name, f"{sys.version_info.major}.{sys.version_info.minor}", "x86_64"), w.name
    assert any(w.name.startswith("llama_cpp_python-") for w in wheels)
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files
    assert all(sums[f] == _sha(out / f) for f in files)
    decoder = next(a for a in info["artifacts"] if a["format"] == "gguf")
    assert decoder["peak_rss_bytes"] > decoder["weight_bytes"]      # measured in a fresh process here
    assert info["bytes"] > sum(w["bytes"] for w in info["wheels"])

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": sys._base_executable,
           "PIP_INDEX_URL": "http://127.0.0.1:9/nowhere", "PIP_FIND_LINKS": str(tmp_path / "nowhere")}
    done = subprocess.run([str(out / "install.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    venv_python = out / "venv" / "bin" / "python"
    probe = subprocess.run([str(venv_python), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "None"

    name = gguf.name
    ran = subprocess.run([str(out / "run"), "run", f"artifacts/{name}", "-p", "Return the number of", "-n", "12"],
                         cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    here = load(gguf, device="cpu").generate("Return the number of", 12)
    assert ran.stdout.rstrip("\n") == "Return the number of" + here

    texts = ["A wonderful film.", "Dull and far too long."]
    predicted = subprocess.run([str(out / "run"), "predict", f"artifacts/{clf.name}", "--json", *texts], cwd=out,
                               env=env, capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    there = json.loads(predicted.stdout)
    ours = load(clf, device="cpu").classify(texts)
    assert [p["label"] for p in there] == [p["label"] for p in ours]
    assert max(abs(p["score"] - q["score"]) for p, q in zip(there, ours)) < 1e-5

    # A bundle copied incompletely, or damaged on the way: the installer names the file and installs nothing.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("venv"))
    missing = sorted((copy / "wheels").glob("numpy-*.whl"))[0]
    missing.unlink()
    model_file = next((copy / "artifacts" / name).glob("*.gguf"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    broken = subprocess.run([str(copy / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0
    assert f"missing: wheels/{missing.name}" in broken.stderr
    assert f"corrupt (sha256 differs): artifacts/{name}/{model_file.name}" in broken.stderr
    assert not (copy / "venv").exists()


def test_installer_refuses_a_missing_or_other_python(tmp_path, bert_onnx):
    out = tmp_path / "b"
    bundle([bert_onnx["int8"][0]], "rpi5", out, measure=False, log=lambda *_: None)
    env = {"PATH": os.environ["PATH"], "PYTHON": str(tmp_path / "missing-python")}
    done = subprocess.run([str(out / "install.sh")], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "python3 is needed (Python 3.11)" in done.stderr
    older = tmp_path / "python3.9"          # reports 3.9 to the installer's version test
    older.write_text(f"#!/bin/sh\nexec {sys.executable} -c "
                     f"\"import sys; sys.version_info = (3, 9, 0); exec(sys.argv[1])\" \"$2\"\n")
    older.chmod(0o755)
    done = subprocess.run([str(out / "install.sh")], env={**env, "PYTHON": str(older)}, capture_output=True,
                          text=True)
    assert done.returncode != 0
    assert "wheels for Python 3.11; this python3 is 3.9" in done.stderr
    assert not (out / "venv").exists()
