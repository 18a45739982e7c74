"""Every `roots-edge` command in README.md's bash blocks runs as written, in the README's order, in one
scratch folder: the README cannot promise a command that fails. The `make` lines are the two set-up
commands themselves (`make test` is this suite; `make demo` is `roots-edge demo`, run by test_default_e2e)."""
import csv
import re
import shlex
import subprocess
import sys
import traceback
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


# Commands on PyTorch models run in this process (click's runner, the same `main`): a new process would spend
# ~7 s of its time importing transformers, 13 times over. The runtime commands, which users run on devices
# without torch, go through the installed console script in their own process.
IN_PROCESS = ("train", "finetune", "eval", "generate", "predict", "info", "export", "import", "prune", "distill")


def run_command(argv: list[str], workdir: Path) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one README command, run where the README runs it."""
    on_artifact = len(argv) > 2 and argv[2].startswith("out/") and argv[1] != "import"   # `info out/gguf-q4`
    if argv[1] in IN_PROCESS and not on_artifact:
        from click.testing import CliRunner

        from roots_edge.cli import main

        result = CliRunner().invoke(main, argv[1:], input="")
        crash = result.exception if not isinstance(result.exception, (SystemExit, type(None))) else None
        tb = "".join(traceback.format_exception(crash)) if crash else ""
        return result.exit_code, result.stdout, result.stderr + tb
    exe = Path(sys.executable).parent / "roots-edge"
    proc = subprocess.run([str(exe), *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def test_every_readme_command_runs_as_written(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    outputs = {}
    for command in readme_commands():
        status, stdout, stderr = run_command(shlex.split(command, comments=True), workdir)
        assert status == 0, f"{command}\n{stdout[-2000:]}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr, command
        outputs[command] = stdout
    assert (workdir / "my-model" / "model.safetensors").is_file() and (workdir / "clf" / "config.json").is_file()
    for artifact in ("out/gguf-q4", "out/onnx-int8", "out/clf-onnx-int8", "out/onnx-int4-smaller"):
        assert (workdir / artifact / "manifest.json").is_file(), artifact
    predicted = next(v for k, v in outputs.items() if k.startswith("roots-edge predict out/"))
    assert predicted.count("positive") + predicted.count("negative") >= 2
    run = next(v for k, v in outputs.items() if k.startswith("roots-edge run "))
    assert run.startswith("Return the") and len(run.split()) > 3
    assert (workdir / "bench.png").stat().st_size > 1000
