"""Every `roots-edge` command in README.md's bash blocks runs as written, in the README's order, in one
scratch folder: the README cannot promise a command that fails. The `make` lines are the two set-up
commands themselves (`make test` is this suite; `make demo` is `roots-edge demo`, run by test_default_e2e)."""
import csv
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SENTIMENT_HELDOUT, SENTIMENT_TRAIN

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("roots-edge ")]


def test_the_readme_shows_commands_of_every_kind():
    verbs = {shlex.split(c, comments=True)[1] for c in readme_commands()}
    assert {"train", "finetune", "eval", "generate", "predict", "info", "export", "import", "run", "chat", "devices",
            "bench"} <= verbs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from roots_edge.train.pretrain import ensure_default_model

    ensure_default_model(progress=False)     # commands without MODEL use it (shared with test_default_e2e)
    root = tmp_path_factory.mktemp("readme")
    for name, rows in (("reviews.csv", SENTIMENT_TRAIN), ("heldout.csv", SENTIMENT_HELDOUT)):
        with (root / name).open("w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
    return root


def test_every_readme_command_runs_as_written(workdir):
    exe = Path(sys.executable).parent / "roots-edge"
    outputs = {}
    for command in readme_commands():
        argv = shlex.split(command, comments=True)
        proc = subprocess.run([str(exe), *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, command
        outputs[command] = proc.stdout
    assert (workdir / "my-model" / "model.safetensors").is_file() and (workdir / "clf" / "config.json").is_file()
    for artifact in ("out/gguf-q4", "out/onnx-int8", "out/clf-onnx-int8", "out/onnx-int4-smaller"):
        assert (workdir / artifact / "manifest.json").is_file(), artifact
    predicted = next(v for k, v in outputs.items() if k.startswith("roots-edge predict out/"))
    assert predicted.count("positive") + predicted.count("negative") >= 2
    run = next(v for k, v in outputs.items() if k.startswith("roots-edge run "))
    assert run.startswith("Return the") and len(run.split()) > 3
    assert (workdir / "bench.png").stat().st_size > 1000
