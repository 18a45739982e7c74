"""`make pi-check`: a Raspberry Pi bundle installed offline and run on an emulated Pi, compared with x86.

1. exports the default model to a GGUF, an ONNX and an OpenVINO target, and a small classifier (the default model
   finetuned on the standard-library topics) to ONNX and OpenVINO (all cached under ~/.cache/roots-edge);
2. runs them here (x86): greedy text for a few prompts, labels and scores for a few texts;
3. `roots-edge bundle ... --platform rpi5` (llama.cpp cross-compiled for the Cortex-A76);
4. unpacks a fresh arm64 Debian 12 root filesystem (python3 only), copies the bundle in, and under qemu-user with
   a Cortex-A76 CPU and a Pi's /proc/cpuinfo runs its `./install.sh` (offline: the chroot has no network tools and
   pip is told --no-index) and its `./run run` / `./run predict`;
5. compares: greedy text equal, labels equal, scores within 1e-3; and verifies every decoder on the Pi as its export
   was verified on x86: its logits over the same token ids against PyTorch's, within the export's own bound (on
   real models greedy text may diverge after a few tokens where kernels round differently: that alone is not a
   failure, logits outside the bound are). Writes benchmarks/results/pi-check-<platform>[-real].md.

Needs root and Debian's qemu-user-static, debootstrap, zstd and the aarch64 cross-compiler (the Makefile installs
them). Not part of `make test`: the first run builds the root filesystem and llama.cpp (~15 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform as host_platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pi_rootfs import SUITE, build_rootfs, device, in_device  # noqa: E402

from roots_edge.core.paths import home  # noqa: E402

DECODER_TARGETS = ("gguf-q4", "onnx-int8", "openvino-int8")
CLASSIFIER_TARGETS = ("onnx-int8", "openvino-fp16", "openvino-int8")
REAL_TARGETS = ("gguf-q4", "onnx-int8", "openvino-int8")
PROMPTS = ("Return the", "The socket module")
TEXTS = ("Create a new TCP connection to the server and send the request.",
         "Parse an email message from a binary file object.",
         "Extract all members of the archive to the current directory.",
         "Run the event loop until the future is done.")
NEW_TOKENS = 24
PROBE_TOKENS = 64
PROBE_DOCS = 8          # held-out docstrings of the default corpus (its validation split), at most PROBE_TOKENS each
RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(msg, flush=True)


def _exported(folder: Path | None, name: str, targets: tuple[str, ...]) -> list[Path]:
    """`targets` of the model at `folder` (None: the default model), exported under artifacts/<name>/ (cached)."""
    from roots_edge.exporters import export, get_target, load_source, reusable
    from roots_edge.model import LanguageModel

    source = load_source(LanguageModel.from_pretrained(folder))
    out = []
    for target_name in targets:
        target = get_target(target_name)
        dest = home() / "artifacts" / name / target.name
        if not reusable(dest, target, source.sha256):
            log(f"exporting {name} to {target.name}")
            export(source, target, dest, force=True)
        out.append(dest)
    return out


def classifier_folder() -> Path:
    """The default model finetuned on stdlib-topics for 2 epochs (cached)."""
    from roots_edge.data.corpora import stdlib_topics
    from roots_edge.model import LanguageModel

    folder = home() / "pi" / "default-topics"
    if not (folder / "config.json").is_file():
        log("finetuning the default model on stdlib-topics (classifier, 2 epochs)")
        train, _ = stdlib_topics()
        lm = LanguageModel.from_pretrained()
        lm.finetune(train.texts, train.labels, epochs=2)
        lm.save_pretrained(folder)
    return folder


def real_artifacts() -> list[Path]:
    """SmolLM2-135M-Instruct's exports from `make real-models` (a real community model, ~100-150 MB each)."""
    root = home() / "real-models" / "exports" / "smollm2"
    found = [root / t for t in REAL_TARGETS if (root / t / "manifest.json").is_file()]
    if len(found) != len(REAL_TARGETS):
        raise SystemExit(f"--real needs SmolLM2's exports in {root} ({', '.join(REAL_TARGETS)}): run `make real-models`")
    return found


def cli_outputs(runner: list[str], decoders: list[str], classifiers: list[str], *, via=None) -> dict:
    """Every decoder's `run` text and every classifier's `predict` lines, through the CLI."""
    out = {}
    for art in decoders:
        for prompt in PROMPTS:
            out[f"{art} | {prompt}"] = via(runner + ["run", art, "-p", prompt, "-n", str(NEW_TOKENS)])
    for art in classifiers:
        out[f"{art} | predict"] = via(runner + ["predict", art, "--json", *TEXTS])
    return out


# Run by both sides' Python (x86: this venv; Pi: the bundle's venv): each decoder's logits over the same token ids.
PROBE = """
import json, sys
import numpy as np
import roots_edge.runtimes as r
out, cases = sys.argv[1], json.load(open(sys.argv[2]))
for i, case in enumerate(cases):
    model = r.load(case["artifact"], device="cpu")
    np.save(f"{out}/{i}.npy", np.concatenate([model.logits(ids) for ids in case["ids"]]).astype(np.float32))
"""


def probe_texts() -> list[str]:
    from roots_edge.data.corpora import stdlib_docstrings

    return [t for t in stdlib_docstrings().val if len(t) > 200][:PROBE_DOCS]


def probe_cases(decoders: dict[Path, str], texts: list[str]) -> list[dict]:
    """The token ids (by x86's tokenizer) of `texts` for every decoder, and its PyTorch source folder."""
    from roots_edge.runtimes import load

    return [{"artifact": f"artifacts/{name}", "source": json.loads((path / "manifest.json").read_text())["source"]["path"],
             "ids": [load(path, device="cpu").tokenize(t)[:PROBE_TOKENS] for t in texts]}
            for path, name in decoders.items()]


def reference_logits(cases: list[dict], out: Path) -> None:
    """PyTorch's logits (the model each artifact was exported from) over each case's ids: `out/<i>.npy`."""
    from roots_edge.runtimes import load

    models = {}
    for i, case in enumerate(cases):
        model = models.get(case["source"]) or models.setdefault(case["source"], load(case["source"], device="cpu"))
        np.save(out / f"{i}.npy", np.concatenate([model.logits(ids) for ids in case["ids"]]).astype(np.float32))


def distribution_gap(ref: np.ndarray, other: np.ndarray) -> dict:
    """Mean KL(ref || other) per position and top-1 agreement over (T, V) logits."""
    def log_softmax(a):
        a = a.astype(np.float64) - a.max(-1, keepdims=True)
        return a - np.log(np.exp(a).sum(-1, keepdims=True))
    lp, lq = log_softmax(ref), log_softmax(other)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    return {"kl": float(kl.mean()), "top1": float((ref.argmax(-1) == other.argmax(-1)).mean()), "n": len(kl)}


def host_run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"x86 run failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return done.stdout


def compare(name: str, x86: str, pi: str) -> tuple[bool, str]:
    if name.endswith("| predict"):
        a, b = json.loads(x86), json.loads(pi)
        labels = [p["label"] for p in a] == [p["label"] for p in b]
        diff = max(abs(p["scores"][k] - q["scores"][k]) for p, q in zip(a, b) for k in p["scores"])
        return labels and diff <= 1e-3, f"labels {'equal' if labels else 'DIFFER'}, max score diff {diff:.2e}"
    same = x86 == pi
    return same, "text equal" if same else f"DIFFER: x86 {x86!r} / pi {pi!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default="rpi5", choices=["rpi5", "rpi4", "linux-aarch64"])
    ap.add_argument("--real", action="store_true",
                    help="Also bundle and run SmolLM2-135M's GGUF, ONNX and OpenVINO exports (from make real-models).")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("pi-check needs root (chroot and mounts for the emulated device)")
    from roots_edge.deploy.bundle import PLATFORMS, bundle

    plat = PLATFORMS[args.platform]
    t_all = time.perf_counter()
    tarball = build_rootfs(home() / "pi" / f"rootfs-{SUITE}-arm64.tar.zst", log=log)
    decoders = _exported(None, "default", DECODER_TARGETS) + (real_artifacts() if args.real else [])
    classifiers = _exported(classifier_folder(), "default-topics", CLASSIFIER_TARGETS)
    names = {p: f"{p.parent.name}-{p.name}" for p in decoders + classifiers}

    work = home() / "pi" / f"check-{args.platform}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    staged = work / "staged"        # unique folder names inside the bundle: <model>-<target>
    for p, name in names.items():
        shutil.copytree(p, staged / name)
    t0 = time.perf_counter()
    info = bundle([staged / names[p] for p in decoders + classifiers], args.platform, work / "bundle", tar=True,
                  log=log)
    bundle_seconds = time.perf_counter() - t0

    exe = str(Path(sys.executable).with_name("roots-edge"))
    dec = [str(staged / names[p]) for p in decoders]
    clf = [str(staged / names[p]) for p in classifiers]
    log("x86 outputs")
    x86 = cli_outputs([exe], dec, clf, via=host_run)
    x86 = {k.replace(str(staged), "artifacts"): v for k, v in x86.items()}
    cases = probe_cases({staged / names[p]: names[p] for p in decoders}, probe_texts())
    for side in ("x86", "pi", "pytorch"):
        (work / "probe" / side).mkdir(parents=True)
    (work / "probe" / "cases.json").write_text(json.dumps(cases))
    (work / "probe" / "probe.py").write_text(PROBE)
    done = subprocess.run([sys.executable, str(work / "probe" / "probe.py"), str(work / "probe" / "x86"),
                           str(work / "probe" / "cases.json")], cwd=work / "bundle", capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"x86 logits probe failed:\n{done.stderr[-3000:]}")
    log("PyTorch reference logits")
    reference_logits(cases, work / "probe" / "pytorch")

    with device(tarball, plat.qemu_cpu, work) as root:
        target = root / "home" / "pi" / "bundle"
        target.parent.mkdir(parents=True)
        shutil.copytree(work / "bundle", target, symlinks=True)
        probe = in_device(root, plat.qemu_cpu, "uname -m; python3 --version; python3 -c 'import pip' 2>&1 | tail -1")
        log(f"device: {' / '.join(probe.stdout.split(chr(10))[:3])}")
        log("installing the bundle on the emulated Pi (offline)")
        t0 = time.perf_counter()
        done = in_device(root, plat.qemu_cpu, "cd /home/pi/bundle && ./install.sh")
        install_seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"install failed on the emulated Pi:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        log(f"installed in {install_seconds:.0f} s")
        venv_bytes = sum(p.stat().st_size for p in (target / "venv").rglob("*") if p.is_file() and not p.is_symlink())

        def pi_run(cmd: list[str]) -> str:
            script = "cd /home/pi/bundle && " + " ".join(_quote(c) for c in cmd)
            res = in_device(root, plat.qemu_cpu, script)
            if res.returncode != 0:
                raise SystemExit(f"emulated Pi run failed: {script}\n{res.stderr[-3000:]}")
            return res.stdout

        log("outputs on the emulated Pi")
        t0 = time.perf_counter()
        pi = cli_outputs(["./run"], [f"artifacts/{names[p]}" for p in decoders],
                         [f"artifacts/{names[p]}" for p in classifiers], via=pi_run)
        run_seconds = time.perf_counter() - t0
        log("logits on the emulated Pi")
        shutil.copytree(work / "probe", target / "probe")
        res = in_device(root, plat.qemu_cpu, "cd /home/pi/bundle && venv/bin/python probe/probe.py probe/pi "
                                             "probe/cases.json")
        if res.returncode != 0:
            raise SystemExit(f"logits probe failed on the emulated Pi:\n{res.stderr[-3000:]}")
        shutil.rmtree(work / "probe" / "pi")
        shutil.copytree(target / "probe" / "pi", work / "probe" / "pi")
    logits = {side: [np.load(work / "probe" / side / f"{i}.npy") for i in range(len(cases))]
              for side in ("x86", "pi", "pytorch")}
    gaps = {case["artifact"]: {pair: distribution_gap(logits[a][i], logits[b][i])
                               for pair, (a, b) in (("pi", ("pytorch", "pi")), ("x86", ("pytorch", "x86")),
                                                    ("pi-x86", ("x86", "pi")))}
            for i, case in enumerate(cases)}

    (work / "outputs.json").write_text(json.dumps({"x86": x86, "pi": pi}, indent=1))
    warned = {f"artifacts/{a['name']}" for a in info["artifacts"] if a["warnings"]}
    bounds = {f"artifacts/{names[p]}": json.loads((p / "manifest.json").read_text())["verification"]["bound"]
              for p in decoders}
    within = {art: g["pi"]["kl"] <= bounds[art]["kl"] and g["pi"]["top1"] >= bounds[art]["top1"]
              for art, g in gaps.items()}
    rows, ok, equal = [], True, 0
    for key in x86:
        art = key.split(" | ")[0]
        same, detail = compare(key, x86[key], pi[key])
        known = not same and art in warned
        close = not same and within.get(art, False)
        ok &= same or known or close
        equal += same
        verdict = ("equal" if same else "differs, as the bundle warns" if known else
                   "diverges; logits within the export's bound" if close else "DIFFERENT")
        rows.append(f"| `{key}` | {verdict} | {detail} |")
        log(f"{'ok  ' if same or known or close else 'FAIL'} {key}: {verdict}; {detail}")
    gap_rows = [f"| `{art}` | {g['pi']['n']} | {g['pi']['kl']:.2e} / {g['pi']['top1']:.3f} | "
                f"{g['x86']['kl']:.2e} / {g['x86']['top1']:.3f} | {g['pi-x86']['kl']:.2e} / {g['pi-x86']['top1']:.3f} "
                f"| kl <= {bounds[art]['kl']}, top-1 >= {bounds[art]['top1']} | "
                f"{'within' if within[art] else 'OUTSIDE'} |" for art, g in gaps.items()]
    ok &= all(within.values())
    report = RESULTS / f"pi-check-{args.platform}{'-real' if args.real else ''}.md"
    report.parent.mkdir(exist_ok=True)
    wheels = sum(w["bytes"] for w in info["wheels"])
    lines = [
        f"# pi-check: {plat.description}, emulated",
        "",
        f"Built on {host_platform.processor() or host_platform.machine()} ({_cpu_name()}); emulated with qemu-user "
        f"{_qemu_version()} as a {plat.qemu_cpu} on Debian {SUITE} arm64 (python3 only). "
        f"Command: `python benchmarks/pi_check.py --platform {args.platform}{' --real' if args.real else ''}` "
        "(`make pi-check` runs it for rpi5 and rpi4).",
        "",
        "| | |",
        "|---|---|",
        f"| bundle | {info['bytes'] / 1e6:,.1f} MB ({len(info['wheels'])} wheels, {wheels / 1e6:,.1f} MB); tarball "
        f"{info['tarball_bytes'] / 1e6:,.1f} MB; made in {bundle_seconds:.0f} s |",
        f"| offline install on the emulated Pi | {install_seconds:.0f} s (venv {venv_bytes / 1e6:,.0f} MB) |",
        f"| {len(x86)} runs on the emulated Pi | {run_seconds:.0f} s |",
        f"| outputs equal to x86 | {equal} of {len(rows)} |",
        "",
        "| run | result | detail |",
        "|---|---|---|",
        *rows,
        "",
        f"Every decoder verified on the emulated Pi as its export was on x86: logits over the same token ids "
        f"({PROBE_DOCS} held-out docstrings of the default corpus, at most {PROBE_TOKENS} tokens each) against "
        "PyTorch's (the model it was exported from, run on x86), held to the bound of the export's own "
        "verification. Mean KL / top-1 agreement:",
        "",
        "| artifact | positions | Pi vs PyTorch | x86 vs PyTorch | Pi vs x86 | export's bound | Pi |",
        "|---|---|---|---|---|---|---|",
        *gap_rows,
        "",
        "Decoders: greedy, " + f"{NEW_TOKENS} new tokens, the runtime's default settings on both sides. Classifiers: "
        "`predict --json` labels equal and scores within 1e-3. Greedy text may diverge where the logits stay within "
        "the export's bound against PyTorch (different SIMD kernels round differently, and near-tied logits flip a greedy choice); "
        "any other difference passes only where the bundle itself warned about it beforehand (bundle.json, "
        "README):",
        "",
        *[f"- `{a['name']}`: {w}" for a in info["artifacts"] for w in a["warnings"]],
        "",
        "Predicted decode speed on the device (bandwidth ceiling, from bundle.json):",
        "",
        *[f"- `{a['name']}`: {a['weight_bytes'] / 1e6:.1f} MB of weights, "
          + ", ".join(f"{k} <= {v:,.0f} tokens/s" for k, v in a["predicted_tokens_per_s"].items())
          for a in info["artifacts"] if a["predicted_tokens_per_s"]],
    ]
    report.write_text("\n".join(lines) + "\n")
    log(f"\n{report}\n" + "\n".join(lines))
    log(f"pi-check {'passed' if ok else 'FAILED'} in {time.perf_counter() - t_all:.0f} s")
    return 0 if ok else 1


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return host_platform.machine()


def _qemu_version() -> str:
    done = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True)
    return done.stdout.split()[2] if done.returncode == 0 else "?"


if __name__ == "__main__":
    raise SystemExit(main())
