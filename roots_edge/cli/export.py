"""`roots-edge export`: the export compiler's command line."""
from __future__ import annotations

from pathlib import Path

import click

from roots_edge.core.paths import check_output
from roots_edge.cli.common import download_option, echo_json


class TargetType(click.ParamType):
    """A target name from the exporters' registry (aliases and any letter case accepted)."""

    name = "target"

    def convert(self, value, param, ctx):
        from roots_edge.core.errors import TargetError
        from roots_edge.exporters.base import get_target

        try:
            get_target(value)
            return value        # as typed: with several targets it names the subfolder (out/gguf-q4)
        except TargetError as exc:
            self.fail(str(exc), param, ctx)


def _targets_help() -> str:
    from roots_edge.exporters.base import target_names

    return ("FORMAT-PRECISION (repeatable); gguf-q4 = gguf-Q4_K_M, gguf-q8 = gguf-Q8_0. One of: "
            + ", ".join(target_names()))


@click.command()
@click.argument("model", required=False)
@click.option("-t", "--target", "targets", multiple=True, required=True, type=TargetType(), help=_targets_help())
@click.option("-o", "--output", type=click.Path(), required=True,
              help="Artifact folder; with several targets a parent folder holding one subfolder per target, named "
                   "as typed (-t gguf-q4 -> OUTPUT/gguf-q4).")
@click.option("--calibration", type=click.Path(), help="Text for data-aware methods and verification "
              "(.txt, .jsonl, .csv); default: the model's validation text.")
@click.option("--no-calibration", "data_free", is_flag=True,
              help="Data-free rounding where a target defaults to data-aware (GGUF importance matrix, OpenVINO "
                   "AWQ / scale estimation); verification still reads the text.")
@click.option("--calibration-tokens", type=click.IntRange(min=256), default=8192, show_default=True,
              help="Tokens of calibration text the GGUF importance matrix and ONNX GPTQ read at most: more is "
                   "slower (~1-2 s per 512 tokens for a 135M model on 2 cores); GPTQ gains from more.")
@click.option("--group-size", type=int, help="Weight block / group size along the input axis "
              "(default: 32 for onnx-int8, 64 for int4; -1 = per channel in OpenVINO).")
@click.option("--method", help="Weight rounding: rtn; GGUF also imatrix (the default below Q8_0); ONNX int4 also "
              "hqq; OpenVINO int4 also awq, scale-estimation, gptq joined by '+' (default there: "
              "awq+scale-estimation for decoders).")
@click.option("--tensor", "tensors", multiple=True, metavar="CLASS=PRECISION",
              help="Another precision for one class of tensors: embeddings, output, attention or ffn "
                   "(e.g. --tensor output=int8). Repeatable; each format says which it can do.")
@click.option("--ratio", type=float, help="OpenVINO int4: share of weights in 4 bits (default 1.0).")
@click.option("--awq/--no-awq", default=None, help="OpenVINO int4 AWQ (default: on for decoders).")
@click.option("--scale-estimation/--no-scale-estimation", default=None,
              help="OpenVINO int4 scale estimation (default: on).")
@click.option("--static-int8", is_flag=True, help="ONNX encoders: static QDQ int8 with calibration.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against PyTorch.")
@click.option("--allow-drift", is_flag=True, help="Keep an artifact that drifts past its bound (recorded).")
@click.option("--force", is_flag=True, help="Overwrite existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@download_option
def export(model, targets, output, calibration, data_free, calibration_tokens, group_size, method, tensors, ratio, awq, scale_estimation, static_int8,
           no_verify, allow_drift, force, as_json, download):
    """Export MODEL (default: the embedded default) to one or more TARGETs, each verified against PyTorch."""
    from roots_edge.data.folder import check_folder
    from roots_edge.exporters import load_source, plan_exports, run_exports, verification_table
    from roots_edge.exporters.quant import parse_classes
    from roots_edge.model import LanguageModel

    classes = parse_classes(tensors)
    folder = LanguageModel.locate(model, allow_download=download)
    # every target's settings and output are checked against the folder's config before torch loads it
    jobs = plan_exports(list(targets), check_folder(folder), Path(output), force=force, group_size=group_size,
                        method=method, ratio=ratio, classes=classes or None, awq=awq, scale_estimation=scale_estimation,
                        static_int8=static_int8, verify=not no_verify, allow_drift=allow_drift, data_free=data_free,
                        calibration_tokens=calibration_tokens)
    source = load_source(LanguageModel.from_pretrained(folder), calibration=Path(calibration) if calibration else None)
    manifests = run_exports(source, jobs, log=lambda line: click.echo(line, err=True))
    if as_json:
        return echo_json(manifests)
    click.echo(verification_table(manifests))
    for job in jobs:
        click.echo(f"{job.target.name:<16}-> {job.out}")


@click.command("import")
@click.argument("gguf_file", type=click.Path())
@click.option("-o", "--output", type=click.Path(), required=True, help="The Hugging Face folder to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
def import_cmd(gguf_file, output, force):
    """Turn GGUF_FILE (llama, qwen2, qwen3 or gemma3; any llama.cpp type) into a Hugging Face folder of float
    weights, config, tokenizer and chat template, which every export target takes."""
    import json

    from roots_edge.exporters.gguf_import import import_gguf
    from roots_edge.data.folder import MODEL_FOLDER

    check_output(output, force, MODEL_FOLDER)
    out = import_gguf(Path(gguf_file), Path(output), overwrite=force, log=lambda m: click.echo(m, err=True))
    record = json.loads((out / "roots_edge.json").read_text())
    parity = record["tokenizer_parity"]
    click.echo(f"{out}: from {record['source_file_type']} weights"
               + (" (dequantized: the rounding of the quantized file stays in them)" if record["quantized_source"]
                  else "")
               + f"; tokenizer splits {parity['identical']}/{parity['texts']} sample texts as llama.cpp does")
