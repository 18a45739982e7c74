import subprocess
import sys

from click.testing import CliRunner

from roots_edge.cli import COMMANDS, main

HEAVY = ("torch", "transformers", "onnxruntime", "openvino", "llama_cpp", "onnx", "nncf")


import pytest


@pytest.mark.parametrize("args", [["--help"], ["export", "--help"], ["bench", "--help"], ["run", "--help"]])
def test_help_imports_no_heavy_library(args):
    code = ("import sys; from roots_edge.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-2:] == ["exit 0", "[]"]
    assert "Usage: " in out and (args == ["--help"] or f" {args[0]} " in out.split("\n", 1)[0])
    if args == ["--help"]:
        for name in COMMANDS:
            assert name in out
    if args[0] == "export":
        assert "gguf-Q4_K_M" in out


def test_every_command_has_help():
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_missing_model_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_cli_finetune_eval_predict(tmp_path, minilm_path):
    from conftest import SENTIMENT_HELDOUT, SENTIMENT_TRAIN

    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in SENTIMENT_TRAIN))
    held = tmp_path / "held.csv"
    held.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in SENTIMENT_HELDOUT))
    out = tmp_path / "clf"
    runner = CliRunner()
    r = runner.invoke(main, ["finetune", str(minilm_path), "--data", str(data), "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "labels: ['negative', 'positive']" in r.output
    r = runner.invoke(main, ["eval", str(out), "--data", str(held)])
    assert r.exit_code == 0, r.output
    assert "accuracy 1.0000" in r.output
    r = runner.invoke(main, ["predict", str(out), "A wonderful film.", "An awful film."])
    assert [line.split("\t")[0] for line in r.output.strip().splitlines()] == ["positive", "negative"]
    r = runner.invoke(main, ["finetune", str(minilm_path), "--data", str(data), "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.output


def test_cli_train_tiny(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"Return the value number {i} from the table of values." for i in range(300)))
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "t"\n[tokenizer]\nvocab_size = 300\n[model]\nhidden_size = 32\nintermediate_size = 64\n'
                      'num_layers = 1\nnum_heads = 2\nnum_kv_heads = 1\ncontext_length = 64\n'
                      '[train]\nsteps = 30\nseq_len = 32\neval_every = 10\n')
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--data", str(corpus), "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "validation perplexity" in r.output
    r = CliRunner().invoke(main, ["info", str(out)])
    assert "LlamaForCausalLM" in r.output and "unigram baseline" in r.output
