"""Deployment bundles: artifacts + the torch-free runtime + every wheel the device needs, installable offline.

    bundle(["art/gguf-q4", "art/onnx-int8"], "rpi5", Path("pi-bundle"))

A bundle is a folder (or a tarball of it) that a user copies to the device:

    artifacts/<name>/      the artifacts, manifests included
    wheels/                roots-edge and every dependency for that platform and Python, pip included
    requirements.txt       each wheel pinned by version and sha256 (pip --require-hashes)
    SHA256SUMS             every file of the bundle; the installer checks it first and names what is missing
    install.sh | .ps1      offline: check the files, make ./venv, pip install --no-index
    run | run.cmd          the `roots-edge` command of that venv (run / chat / predict / bench ...)
    README.md, bundle.json what it holds, how to install, the memory measured here and the predicted speed

Only the runtime libraries the artifacts need go in (`onnxruntime`, `openvino`, `llama-cpp-python`), at the versions
this machine runs, so the device computes what the exports were verified with. llama-cpp-python publishes no wheels:
for aarch64 Linux its llama.cpp is cross-compiled here for the device's CPU (`crossbuild`); for x86-64 Linux the
build installed here (AVX2 level, see the Makefile) is packed as a wheel.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from roots_edge.core.errors import RootsEdgeError
from roots_edge.formats.manifest import Manifest
from roots_edge.runtimes import backends, facts
from roots_edge.core.paths import OutputKind, atomic_dir, atomic_file, sha256_file, strays_of, write_text_atomic

BUNDLE_SCHEMA = 1


def _bundle_strays(folder: Path) -> list[str]:
    """What a bundle did not write in `folder`: everything but the files SHA256SUMS lists, SHA256SUMS itself and
    the venv/ its install script makes (all of it when there is no bundle.json)."""
    sums = folder / "SHA256SUMS"
    if not (folder / "bundle.json").is_file() or not sums.is_file():
        return strays_of(folder, lambda name: False)
    listed = {line.split("  ", 1)[1] for line in sums.read_text(encoding="utf-8", errors="replace").splitlines()
              if "  " in line} | {"SHA256SUMS"}
    return strays_of(folder, lambda name: name in listed or name.startswith("venv/"))


BUNDLE = OutputKind("a bundle folder (bundle.json and the files SHA256SUMS lists, plus its venv/)", _bundle_strays)


class BundleError(RootsEdgeError):
    """A bundle cannot be made as asked."""


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    system: str                       # linux, macos, windows
    machine: str                      # aarch64, x86_64, arm64
    wheel_tags: tuple[str, ...]       # pip download --platform, newest first
    python: str | None = None         # the device's Python (None: this machine's)
    llama_arch: str | None = None     # -march for a cross-built llama.cpp
    qemu_cpu: str | None = None       # the CPU `make pi-check` emulates
    bandwidth_gbs: float | None = None  # memory copy bandwidth the speed prediction uses
    bandwidth_source: str = ""
    memory_gb: tuple[int, ...] = ()   # the device's memory sizes


def _manylinux(machine: str, newest: int) -> tuple[str, ...]:
    return tuple(f"manylinux_2_{minor}_{machine}" for minor in range(newest, 16, -1)) + (
        f"manylinux2014_{machine}", f"linux_{machine}")


PLATFORMS = {p.name: p for p in (
    # Raspberry Pi OS (64-bit) bookworm: Debian 12, glibc 2.36, Python 3.11.
    Platform("rpi5", "Raspberry Pi 5 (4x Cortex-A76, Raspberry Pi OS 64-bit / Debian 12)", "linux", "aarch64",
             _manylinux("aarch64", 36), "3.11", "armv8.2-a+dotprod+fp16", "cortex-a76", 6.0,
             "copy bandwidth measured on a Pi 5 (issue 13)", (2, 4, 8, 16)),
    Platform("rpi4", "Raspberry Pi 4 (4x Cortex-A72, Raspberry Pi OS 64-bit / Debian 12)", "linux", "aarch64",
             _manylinux("aarch64", 36), "3.11", "armv8-a", "cortex-a72", 4.0,
             "assumed: LPDDR4-3200 on a 32-bit bus, below the Pi 5's 6 GB/s", (1, 2, 4, 8)),
    Platform("linux-aarch64", "64-bit ARM Linux with glibc >= 2.36 (Debian 12, Ubuntu 24.04)", "linux", "aarch64",
             _manylinux("aarch64", 36), None, "armv8-a", "cortex-a72"),
    Platform("linux-x86_64", "x86-64 Linux with glibc >= 2.36 and AVX2", "linux", "x86_64",
             _manylinux("x86_64", 36)),
    Platform("macos-arm64", "macOS 14+ on Apple silicon (numpy's wheels need 14)", "macos", "arm64",
             tuple(f"macosx_{v}_0_arm64" for v in (14, 13, 12, 11))),
    Platform("windows-x86_64", "64-bit Windows 10/11", "windows", "x86_64", ("win_amd64",)),
)}

# Pinned to this machine's versions when installed here, so the device runs what the exports were verified with.
PINNED = ("numpy", "tokenizers", "onnxruntime", "openvino", "jinja2", "click", "tqdm")


def platform(name: str) -> Platform:
    if name not in PLATFORMS:
        raise BundleError(f"unknown platform {name!r}; supported: {', '.join(PLATFORMS)}")
    return PLATFORMS[name]


@dataclass
class BundledArtifact:
    name: str
    format: str
    target: str
    task: str
    bytes: int
    weight_bytes: int
    verified: bool | None
    warnings: list[str] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    context: int | None = None        # tokens the peak RSS was measured at (decoders)
    predicted_tokens_per_s: dict = field(default_factory=dict)


def weight_bytes(folder: Path, fmt: str) -> int:
    """Bytes of the weight files (the format's backend names them): what a decoder reads about once per token."""
    return facts(fmt).weight_bytes(folder)


def predicted_decode(weights: int, bandwidth_gbs: float) -> float:
    """Tokens/s if decoding were bound by memory bandwidth only: each token reads every weight once. An upper bound
    for models larger than the CPU caches; small models are compute- and overhead-bound well below it."""
    return bandwidth_gbs * 1e9 / max(weights, 1)


def _inspect(path: Path, plat: Platform) -> tuple[Path, str, Manifest | None]:
    from roots_edge.runtimes import RuntimeLoadError, detect_format

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path} does not exist; give artifact folders written by `roots-edge export`")
    folder = path if path.is_dir() else path.parent
    try:
        fmt = detect_format(path)
    except RuntimeLoadError as exc:
        raise BundleError(str(exc)) from None
    if fmt == "torch":
        raise BundleError(f"{path} is a PyTorch model folder; a bundle runs without torch. Export it first: "
                          f"roots-edge export {path} --target gguf-q4 (or onnx-int8, openvino-int8)")
    if fmt == "gguf" and plat.system in ("macos", "windows"):
        raise BundleError(f"{path} is a GGUF artifact, which cannot run from a {plat.name} bundle: llama-cpp-python "
                          f"publishes no {plat.name} wheel and llama.cpp cannot be cross-compiled for {plat.system} "
                          f"here. Bundle an ONNX or OpenVINO export instead, or pip install llama-cpp-python on "
                          f"the device (it compiles llama.cpp there)")
    manifest = Manifest.read(folder)
    if manifest is not None:
        for entry in manifest.files:
            f = folder / entry.name
            if not f.is_file() or f.stat().st_size != entry.bytes:
                raise BundleError(f"{f} is missing or its size differs from {folder / 'manifest.json'}; "
                                  f"re-export the artifact before bundling it")
    return folder, fmt, manifest


# Measured with `make pi-check` (OpenVINO 2026.4.1 under qemu as a Cortex-A72 and a Cortex-A76): the ARM CPU plugin
# ran the default model's topic classifier with int8 activations (NNCF PTQ) with class probabilities 0.011 to 0.16
# from x86 and PyTorch (two trainings of the classifier on two hosts; labels equal on 4 texts), while the same model
# in f32/f16 and weight-only int8 decoders matched x86 to 1e-6.
ARM_OPENVINO_PTQ = ("OpenVINO's ARM CPU plugin runs models with int8 activations (this artifact's static int8 "
                    "quantization) with scores differing from x86 and PyTorch (by 0.011 to 0.16 on our test classifier, "
                    "measured under emulation; labels agreed); on ARM prefer onnx-int8 or openvino-fp16 for this model")


def platform_warnings(manifest: Manifest | None, fmt: str, plat: Platform) -> list[str]:
    """What is known to run differently on `plat` for this artifact (the bundle still holds it)."""
    if fmt == "openvino" and plat.machine in ("aarch64", "arm64") and manifest is not None \
            and manifest.quant.get("activations") == "int8-static":
        return [ARM_OPENVINO_PTQ]
    return []


def _project_wheel(dest: Path) -> Path:
    """A wheel of this roots-edge (built from the source tree it runs from)."""
    import roots_edge

    root = Path(roots_edge.__file__).resolve().parent.parent        # the folder holding roots_edge/
    if not (root / "pyproject.toml").is_file():
        raise BundleError(f"bundling needs the roots-edge source tree (pyproject.toml in {root}); install "
                          f"roots-edge from a clone with `pip install -e .`")
    had_build = (root / "build").exists()
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(dest), str(root)], capture_output=True, text=True)
    if not had_build:      # setuptools builds in the tree; leave it as it was
        shutil.rmtree(root / "build", ignore_errors=True)
    wheels = sorted(dest.glob("roots_edge-*.whl"))
    if done.returncode != 0 or not wheels:
        raise BundleError(f"could not build the roots-edge wheel: {(done.stderr or done.stdout).strip()[-400:]}")
    return wheels[0]


def _llama_wheel(plat: Platform, log) -> Path:
    from roots_edge.deploy import crossbuild

    version = metadata.version("llama-cpp-python")
    if plat.system == "linux" and plat.machine == "aarch64":
        return crossbuild.build_wheel(version, "aarch64", plat.llama_arch or "armv8-a", log=log)
    if plat.system == "linux" and plat.machine == "x86_64" and os.uname().machine == "x86_64":
        return crossbuild.wheel_from_installed(version)
    raise BundleError(f"llama.cpp cannot be built for {plat.name} on this machine")


def _pins(formats: set[str]) -> list[str]:
    runtime_dists = {cls.facts.distribution for cls in backends().values()}
    wanted = [d for d in PINNED if d not in runtime_dists or d in {facts(f).distribution for f in formats}]
    out = []
    for dist in wanted:
        try:
            out.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return out


def _download(plat: Platform, python: str, requirements: list[str], wheels: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "-d", str(wheels),
           "--find-links", str(wheels), "--python-version", python, "--implementation", "cp",
           "--abi", f"cp{python.replace('.', '')}"]
    for tag in plat.wheel_tags:
        cmd += ["--platform", tag]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write("\n".join(requirements) + "\n")
    try:
        done = subprocess.run(cmd + ["-r", req.name], capture_output=True, text=True)
    finally:
        os.unlink(req.name)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.startswith("ERROR")]
        raise BundleError(f"no wheels for {plat.name} / Python {python} satisfy {', '.join(requirements)}: "
                          f"{' '.join(lines[-2:]) or done.stderr.strip()[-300:]}. Try another --python, or a "
                          f"different artifact format for this platform")


def _wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def lock(wheels: Path) -> str:
    """requirements.txt: every wheel pinned by version and sha256."""
    lines = [f"{name}=={version} --hash=sha256:{sha256_file(w)}"
             for w in sorted(wheels.glob("*.whl")) for name, version in [_wheel_name_version(w)]]
    return "# Every wheel of this bundle, pinned with its hash: pip install --no-index --require-hashes\n" + \
        "\n".join(lines) + "\n"


def measure_peak_rss(folder: Path, task: str) -> tuple[int | None, int | None]:
    """(peak RSS in bytes, context in tokens) of loading the artifact as `./run` does (the runtime's default
    context) and generating 16 tokens, or classifying / embedding one text, in a fresh process on this machine;
    (None, None) when it cannot run here."""
    verb = {"classification": "m.classify(['The'])", "embedding": "m.embed(['The'])"}.get(task, "m.generate('The', 16)")
    code = ("import json, resource, sys, roots_edge.runtimes as r\n"
            f"m = r.load(sys.argv[1], device='cpu')\n{verb}\n"
            "print(json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, m.info().get('context_length')]))")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return None, None
    rss, ctx = json.loads(done.stdout.strip().splitlines()[-1])
    return rss * 1024, ctx


def bundle(artifacts: list[Path], platform_name: str, out: Path, *, python: str | None = None, tar: bool = False,
           force: bool = False, measure: bool = True, log=print) -> dict:
    """Write a bundle for `platform_name` holding `artifacts` to `out` (and `out.tar.gz` with `tar`)."""
    plat = platform(platform_name)
    python = python or plat.python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise BundleError(f"--python must look like 3.11; got {python!r}")
    if not artifacts:
        raise BundleError("name at least one artifact to bundle")
    out = Path(out)
    if out.exists() and not force:
        raise BundleError(f"{out} exists; pass --force to replace it")
    BUNDLE.check(out)
    found = [_inspect(a, plat) for a in artifacts]
    names = []
    for folder, _, _ in found:
        name = folder.resolve().name
        while name in names:
            name += "-2"
        names.append(name)
    formats = {fmt for _, fmt, _ in found}
    t0 = time.perf_counter()
    with atomic_dir(out, replace=BUNDLE) as tmp:
        wheels = tmp / "wheels"
        wheels.mkdir()
        arts: list[BundledArtifact] = []
        for (folder, fmt, manifest), name in zip(found, names):
            log(f"artifact {name} ({fmt})")
            shutil.copytree(folder, tmp / "artifacts" / name,
                            ignore=shutil.ignore_patterns(".tmp-*", "__pycache__"))
            task = manifest.source.task if manifest else "causal-lm"
            art = BundledArtifact(name, fmt, manifest.target if manifest else fmt, task or "causal-lm",
                                  sum(p.stat().st_size for p in (tmp / "artifacts" / name).rglob("*") if p.is_file()),
                                  weight_bytes(folder, fmt), manifest.verification.passed if manifest else None,
                                  platform_warnings(manifest, fmt, plat))
            for warning in art.warnings:
                log(f"warning: {name}: {warning}")
            if measure:
                art.peak_rss_bytes, art.context = measure_peak_rss(folder, art.task)
            if art.task == "causal-lm" and plat.bandwidth_gbs:
                art.predicted_tokens_per_s[plat.name] = round(predicted_decode(art.weight_bytes, plat.bandwidth_gbs), 1)
            arts.append(art)
        log("roots-edge wheel")
        own = _project_wheel(wheels)
        if "gguf" in formats:
            log(f"llama.cpp for {plat.name}")
            shutil.copy2(_llama_wheel(plat, log), wheels)
        extras = ",".join(sorted(facts(f).run_extra for f in formats))
        requirements = [f"roots-edge[{extras}]=={_wheel_name_version(own)[1]}", "pip", *_pins(formats)]
        if "gguf" in formats:
            requirements.append(f"llama-cpp-python=={metadata.version('llama-cpp-python')}")
        log(f"wheels for {plat.name} / Python {python}: {', '.join(requirements)}")
        _download(plat, python, requirements, wheels)
        write_text_atomic(tmp / "requirements.txt", lock(wheels))
        info = {"schema": BUNDLE_SCHEMA, "platform": asdict(plat), "python": python,
                "extras": extras, "created_by": metadata.version("roots-edge"),
                "built_on": {"machine": os.uname().machine, "python": sys.version.split()[0]},
                "artifacts": [asdict(a) for a in arts],
                "wheels": [{"file": w.name, "bytes": w.stat().st_size} for w in sorted(wheels.glob("*.whl"))]}
        write_text_atomic(tmp / "bundle.json", json.dumps(info, indent=2) + "\n")
        write_text_atomic(tmp / "README.md", readme(info))
        _write_scripts(tmp, plat, python)
        write_text_atomic(tmp / "SHA256SUMS", "".join(
            f"{sha256_file(p)}  {p.relative_to(tmp).as_posix()}\n"
            for p in sorted(tmp.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"))
    info["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info["seconds"] = round(time.perf_counter() - t0, 1)
    if tar:
        tarball = out.with_name(out.name + ".tar.gz")
        with atomic_file(tarball) as tmp_tar:
            with tarfile.open(tmp_tar, "w:gz") as tf:
                tf.add(out, arcname=out.name)
        info["tarball"] = str(tarball)
        info["tarball_bytes"] = tarball.stat().st_size
    return info


CHECK_PY = '''\
"""Check every file of this bundle against SHA256SUMS before installing (standard library only)."""
import hashlib, pathlib, sys

here = pathlib.Path(__file__).resolve().parent
sums = here / "SHA256SUMS"
if not sums.is_file():
    sys.exit("this bundle is incomplete: SHA256SUMS is missing; copy the whole bundle folder again")
bad = []
for line in sums.read_text().splitlines():
    digest, name = line.split("  ", 1)
    path = here / name
    if not path.is_file():
        bad.append(f"missing: {name}")
        continue
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != digest:
        bad.append(f"corrupt (sha256 differs): {name}")
if bad:
    sys.exit("this bundle is incomplete or damaged; copy it again from the machine that made it:\\n  "
             + "\\n  ".join(bad))
'''

INSTALL_SH = '''\
#!/bin/sh
# Offline install of this bundle: check every file, make ./venv, install the pinned wheels. No network needed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || { echo "python3 is needed (Python {python}); install it or set PYTHON=" >&2; exit 1; }
"$PY" -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "{python}" else
"this bundle holds wheels for Python {python}; this python3 is " + v + ". Set PYTHON=/path/to/python{python}")'
"$PY" "$HERE/check_bundle.py"
rm -rf "$HERE/venv"
"$PY" -m venv --without-pip "$HERE/venv"
PIP_WHEEL=$(ls "$HERE"/wheels/pip-*.whl)
# --isolated: no pip.conf or PIP_* variables of this machine take part; only this bundle's wheels are used.
"$HERE/venv/bin/python" "$PIP_WHEEL/pip" --isolated install --quiet --no-index --disable-pip-version-check \\
    --find-links "$HERE/wheels" --require-hashes -r "$HERE/requirements.txt"
echo "installed; try: $HERE/run --help"
'''

RUN_SH = '''\
#!/bin/sh
# The roots-edge command of this bundle, e.g. ./run run artifacts/NAME -p "Hello" | ./run predict artifacts/NAME "text"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$HERE/venv/bin/roots-edge" ] || { echo "not installed yet: run $HERE/install.sh first" >&2; exit 1; }
exec "$HERE/venv/bin/roots-edge" "$@"
'''

INSTALL_PS1 = '''\
# Offline install of this bundle: check every file, make .\\venv, install the pinned wheels.
$ErrorActionPreference = "Stop"
$Here = Split-Path -Parent $MyInvocation.MyCommand.Path
$Py = if ($env:PYTHON) { $env:PYTHON } else { "python" }
& $Py "$Here\\check_bundle.py"; if ($LASTEXITCODE) { exit 1 }
if (Test-Path "$Here\\venv") { Remove-Item -Recurse -Force "$Here\\venv" }
& $Py -m venv --without-pip "$Here\\venv"; if ($LASTEXITCODE) { exit 1 }
$PipWheel = (Get-ChildItem "$Here\\wheels\\pip-*.whl").FullName
& "$Here\\venv\\Scripts\\python.exe" "$PipWheel\\pip" --isolated install --quiet --no-index --find-links "$Here\\wheels" `
    --require-hashes -r "$Here\\requirements.txt"; if ($LASTEXITCODE) { exit 1 }
Write-Output "installed; try: $Here\\run.cmd --help"
'''

RUN_CMD = '''\
@echo off
if not exist "%~dp0venv\\Scripts\\roots-edge.exe" (echo not installed yet: run install.ps1 first & exit /b 1)
"%~dp0venv\\Scripts\\roots-edge.exe" %*
'''


def _write_scripts(folder: Path, plat: Platform, python: str) -> None:
    (folder / "check_bundle.py").write_text(CHECK_PY)
    if plat.system == "windows":
        (folder / "install.ps1").write_text(INSTALL_PS1)
        (folder / "run.cmd").write_text(RUN_CMD)
        return
    for name, text in (("install.sh", INSTALL_SH), ("run", RUN_SH)):
        path = folder / name
        path.write_text(text.replace("{python}", python))
        path.chmod(0o755)


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.1f} MB"


def readme(info: dict) -> str:
    plat, py = info["platform"], info["python"]
    windows = plat["system"] == "windows"
    install, run = (r".\install.ps1", r".\run.cmd") if windows else ("./install.sh", "./run")
    rows = []
    for a in info["artifacts"]:
        verified = {True: "passed", False: "FAILED", None: "not verified"}[a["verified"]]
        ctx = f" at {a['context']:,} tokens" if a["context"] else ""
        rows.append(f"| `artifacts/{a['name']}` | {a['target']} | {a['task']} | {_mb(a['bytes'])} | "
                    f"{_mb(a['peak_rss_bytes'])}{ctx} | {verified} |")
    examples = []
    for a in info["artifacts"]:
        if a["task"] == "causal-lm":
            examples.append(f"{run} run artifacts/{a['name']} -p \"Return the\" -n 32")
            examples.append(f"{run} chat artifacts/{a['name']}")
        else:
            examples.append(f"{run} predict artifacts/{a['name']} \"some text\"")
    speed = []
    for a in info["artifacts"]:
        for key, tps in a["predicted_tokens_per_s"].items():
            p = PLATFORMS[key]
            speed.append(f"| `{a['name']}` | {p.name} | {_mb(a['weight_bytes'])} | {p.bandwidth_gbs:g} GB/s "
                         f"({p.bandwidth_source}) | {tps:,.0f} |")
    memory = ", ".join(f"{g} GB" for g in plat["memory_gb"]) or "any"
    known = [f"- `{a['name']}`: {w}" for a in info["artifacts"] for w in a["warnings"]]
    text = [
        f"# roots-edge bundle for {plat['name']}",
        "",
        f"{plat['description']}, Python {py}. Everything installs offline: no network, no compiler, no torch.",
        "",
        "## Install and run",
        "",
        "```",
        f"{install}          # checks every file against SHA256SUMS, then makes ./venv from wheels/",
        *examples,
        "```",
        "",
        "If a file is missing or damaged the installer names it; copy the bundle again.",
        "",
        "## What it holds",
        "",
        "| artifact | target | task | size | peak RSS (measured on the build machine) | verification |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"`wheels/` holds {len(info['wheels'])} wheels ({_mb(sum(w['bytes'] for w in info['wheels']))}): "
        f"roots-edge with the `{info['extras']}` extras and its dependencies for {plat['name']}, pinned with their "
        "hashes in `requirements.txt`.",
        *(["", "## Known differences on this platform", "", *known] if known else []),
        "",
        "## Memory",
        "",
        f"Peak RSS was measured on the machine that built the bundle ({info['built_on']['machine']}), loading each "
        "artifact as `run` does (the runtime's default context, in the table) and generating 16 tokens; on the "
        f"device it is about the same (the weights and KV cache dominate). Device memory sizes: {memory}. The runtime "
        "checks free "
        "memory before it loads a model and says so when the model will not fit at the requested context "
        "(`--context` lowers it).",
    ]
    if speed:
        text += [
            "",
            "## Predicted decode speed (a prediction, not a measurement)",
            "",
            "Decoding reads every weight once per token, so memory bandwidth bounds it: tokens/s <= bandwidth / "
            "weight bytes. This is an upper bound; models that fit in the CPU caches are limited by compute and "
            "per-token overhead instead and run well below it.",
            "",
            "| artifact | device | weights read per token | bandwidth | predicted upper bound, tokens/s |",
            "|---|---|---|---|---|",
            *speed,
        ]
    return "\n".join(text) + "\n"
