"""Compression recipes: finetune -> prune -> distill -> export -> bench, one TOML file, one report.

    name = "minilm-topics"
    [finetune]                       # optional: make the teacher first (classifiers)
    data = "stdlib-topics"
    [prune]
    layers = 3
    ffn = 0.5
    [distill]
    data = "stdlib-topics"
    steps = 2000
    [export]
    targets = ["onnx-int8", "openvino-int8", "gguf-q8"]
    [bench]
    runs = 3

Sections run in that order (a recipe that lists them otherwise is refused, since it would not mean what it
says); any may be left out. Every stage is written as a model folder or artifact under the output folder, so
each can be inspected, exported or rerun alone, and the report puts size, speed and quality of each side by side.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from roots_edge.core.config import POSITIVE, build, option, split
from roots_edge.core.errors import RecipeError
from roots_edge.data.corpora import labeled_set, missing_source, text_corpus
from roots_edge.formats.manifest import ARTIFACT
from roots_edge.data.folder import MODEL_FOLDER, LoadedModel
from roots_edge.core.paths import OutputKind

ORDER = ("finetune", "prune", "distill", "export", "bench")


@dataclass
class FinetuneStep:
    """[finetune]: train a classifier head on labeled rows; the table's other keys are FinetuneConfig settings."""

    data: str = "stdlib-topics"       # a labeled file (text,label) or "stdlib-topics"
    options: dict = field(default_factory=dict, init=False)
    config: object = field(default=None, init=False)

    def relations(self, where: str) -> None:
        _check_source(where, "data", self.data, labeled=True)


@dataclass
class PruneStep:
    """[prune]: a smaller dense model; the table's other keys are PruneConfig settings."""

    calibration: str = "stdlib-docstrings"   # a text file or "stdlib-docstrings"
    options: dict = field(default_factory=dict, init=False)
    config: object = field(default=None, init=False)

    def relations(self, where: str) -> None:
        _check_source(where, "calibration", self.calibration)


@dataclass
class DistillStep:
    """[distill]: the pruned student toward the teacher; the table's other keys are DistillConfig settings."""

    data: str = "stdlib-docstrings"   # decoders/embedders: text; classifiers: labeled file or "stdlib-topics"
    unlabeled: str | None = None      # classifiers: more text the teacher labels
    options: dict = field(default_factory=dict, init=False)
    config: object = field(default=None, init=False)

    def relations(self, where: str) -> None:
        _check_source(where, "data", self.data)
        if self.unlabeled is not None:
            _check_source(where, "unlabeled", self.unlabeled)


@dataclass
class ExportStep:
    targets: list[str] = option(default_factory=lambda: ["onnx-int8", "openvino-int8", "gguf-q8"],
                                what='a list of target names, e.g. ["onnx-int8"]')
    teacher: bool = True              # export the teacher to the same targets (the report compares both)

    def relations(self, where: str) -> None:
        from roots_edge.core.errors import TargetError
        from roots_edge.exporters import get_target

        if not self.targets:
            raise RecipeError(f"{where}: targets must be a list of target names, e.g. [\"onnx-int8\"]")
        for t in self.targets:
            try:
                get_target(t)
            except TargetError as exc:
                raise RecipeError(f"{where}: {exc}") from None


@dataclass
class BenchStep:
    runs: int = option(3, within=POSITIVE)
    threads: int | None = option(2, within=POSITIVE)
    prompt_tokens: int = option(128, within=POSITIVE)
    gen_tokens: int = option(64, within=POSITIVE)


STEPS = {"finetune": FinetuneStep, "prune": PruneStep, "distill": DistillStep, "export": ExportStep,
         "bench": BenchStep}


def method_config(section: str):
    """The train layer's config that a step's other keys fill (imported when a recipe is read: torch loads then)."""
    if section == "finetune":
        from roots_edge.train.classifier import FinetuneConfig

        return FinetuneConfig
    if section == "prune":
        from roots_edge.train.prune import PruneConfig

        return PruneConfig
    if section == "distill":
        from roots_edge.train.distill import DistillConfig

        return DistillConfig
    return None


def _check_source(where: str, name: str, value, labeled: bool = False) -> None:
    problem = missing_source(value, labeled)
    if problem:
        raise RecipeError(f"{where}: {name} = {problem}")


def read_step(section: str, table, where: str):
    """One recipe table as its step: the step's own keys, the rest checked as its method's config."""
    kind, method = STEPS[section], method_config(section)
    if method is None or not isinstance(table, dict):
        return build(kind, table, where, section)
    own, rest = split(kind, table)
    step = build(kind, own, where, section)
    step.options, step.config = rest, build(method, rest, where, section)
    return step


@dataclass
class CompressRecipe:
    name: str
    description: str = ""
    steps: dict = field(default_factory=dict)    # section -> step config, in ORDER

    @classmethod
    def from_dict(cls, raw: dict, where: str = "recipe") -> "CompressRecipe":
        if not isinstance(raw.get("name"), str):
            raise RecipeError(f"{where}: a recipe needs a name (name = \"...\")")
        sections = [k for k in raw if k not in ("name", "description")]
        unknown = [k for k in sections if k not in ORDER]
        if unknown:
            raise RecipeError(f"{where}: unknown sections {unknown}; a compression recipe has {list(ORDER)}")
        if not sections:
            raise RecipeError(f"{where}: the recipe has no steps; give at least one of {list(ORDER)}")
        positions = [ORDER.index(k) for k in sections]
        if positions != sorted(positions):
            raise RecipeError(f"{where}: steps {sections} are out of order; they run as {list(ORDER)}: "
                              "list them in that order")
        steps = {name: read_step(name, raw[name], where) for name in sections}
        return cls(raw["name"], str(raw.get("description", "")), steps)


def load_compress_recipe(name_or_path: str | Path) -> CompressRecipe:
    """A TOML file by path, or a shipped recipe by name (`default-compress`, `minilm-compress`)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text, where = path.read_bytes(), str(path)
    else:
        res = resources.files("roots_edge.models") / f"{name_or_path}.toml"
        if not res.is_file():
            raise RecipeError(f"no compression recipe {name_or_path!r}: give a .toml file or a shipped one "
                              "(default-compress, minilm-compress)")
        text, where = res.read_bytes(), f"models/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{where}: not valid UTF-8 TOML ({exc})") from None
    return CompressRecipe.from_dict(raw, where)


# ---------------------------------------------------------------------------------------------- data

def text_data(source: str, split: str = "all") -> list[str]:
    """Documents of `source` (a data name or a file): all of them (`distill` splits them again by content hash,
    so its validation documents are the corpus's own), or the training split only."""
    corpus = text_corpus(source)
    return corpus.train if split == "train" else corpus.documents


def stage_quality(stage: LoadedModel, test) -> dict:
    """Quality on held-out data: perplexity on the standard-library docstrings' validation split (LMs; the
    default model's own measure) or test accuracy (classifiers)."""
    if stage.spec.task == "causal-lm":
        from roots_edge.data.corpora import Corpus, stdlib_docstrings
        from roots_edge.train.lm import TokenStream, stream_nll

        corpus = stdlib_docstrings()   # the validation split alone: its 390k training tokens are not needed here
        streams = TokenStream.encode(stage.tokenizer.backend_tokenizer, Corpus([], corpus.val, corpus.source,
                                                                              corpus.sha256), stage.spec.eos_token_id)
        seq = min(256, stage.spec.context_length)
        return {"val_perplexity": round(math.exp(stream_nll(stage.model, streams.val, seq, 65536)[0]), 3)}
    if stage.spec.task == "classification" and test is not None:
        from roots_edge.train.classifier import report

        return {"test_accuracy": round(report(stage.model, stage.tokenizer, test).accuracy, 4)}
    return {}


# ---------------------------------------------------------------------------------------------- running
STAGE_FOLDERS = ("teacher", "pruned", "distilled")
REPORT_FILES = ("report.json", "report.md", "report.png", "bench.md", "bench.png")
CHECKPOINT = ".distill.checkpoint"


def _run_strays(folder: Path) -> list[str]:
    """What a recipe run did not write in `folder`: its stage model folders, its artifacts, its reports and its
    distillation checkpoint are its own; each stage or artifact folder must itself hold only what it writes."""
    found = []
    for path in sorted(folder.iterdir()):
        top, is_dir = path.name, path.is_dir() and not path.is_symlink()
        if top in STAGE_FOLDERS and is_dir:
            found += [f"{top}/{s}" for s in MODEL_FOLDER.strays(path)]
        elif top == "artifacts" and is_dir:
            for art in sorted(path.iterdir()):
                if art.is_dir() and not art.is_symlink():
                    found += [f"artifacts/{art.name}/{s}" for s in ARTIFACT.strays(art)]
                else:
                    found.append(f"artifacts/{art.name}")
        elif not (top in REPORT_FILES or top.startswith(CHECKPOINT)):
            found.append(f"{top}/" if is_dir else top)
    return found


RUN_OUTPUT = OutputKind("a recipe run's folder (teacher/, pruned/, distilled/, artifacts/, report and bench "
                        "files)", _run_strays)


def run_recipe(model: str | Path, recipe: CompressRecipe, out: Path, *, force: bool = False, progress: bool = True,
               log=print) -> dict:
    """Run `recipe` on the model folder `model`; stages go under `out`; returns the report dict (also written
    as `report.json`, `report.md` and, with matplotlib, `report.png`)."""
    import shutil

    from roots_edge.core.paths import write_text_atomic

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        from roots_edge.core.errors import OutputExistsError

        raise OutputExistsError(f"{out} already exists; choose another output or pass --force")
    RUN_OUTPUT.check(out)          # --force writes into a folder of an earlier run, nothing else
    out.mkdir(parents=True, exist_ok=True)
    steps = recipe.steps
    stages: list[dict] = []
    teacher = LoadedModel.load(Path(model))
    t_all = time.perf_counter()
    # classifiers are scored on a held-out split: the topic set's test rows (a labeled file has none)
    labeled = steps["finetune"].data if "finetune" in steps else \
        steps["distill"].data if "distill" in steps and teacher.spec.task == "classification" else None
    test = labeled_set(labeled)[1] if labeled else None

    def record(name, stage: LoadedModel, seconds, extra=None):
        entry = {"stage": name, "folder": str(stage.path), "parameters": stage.parameters,
                 "seconds": round(seconds, 1), **stage_quality(stage, test), **(extra or {})}
        stages.append(entry)
        log(f"{name}: {entry['parameters'] / 1e6:.2f} M parameters, "
            + ", ".join(f"{k} {v}" for k, v in entry.items() if k.endswith(("perplexity", "accuracy"))))

    if "finetune" in steps:
        from roots_edge.train.classifier import finetune_classifier

        st = steps["finetune"]
        train, _ = labeled_set(st.data)
        t0 = time.perf_counter()
        clf, metrics = finetune_classifier(teacher.model, teacher.tokenizer, teacher.spec, train,
                                           st.config, progress=progress)
        teacher.model = clf
        teacher.record = {**teacher.record, "kind": "finetuned-classifier",
                          "history": [*teacher.record.get("history", []),
                                      {"kind": "finetune-classification", "from": str(teacher.path),
                                       "data": st.data, "metrics": {k: v for k, v in metrics.items()
                                                                    if k not in ("train", "history")}}]}
        teacher.save(out / "teacher", overwrite=True)
        record("teacher (finetuned)", teacher, time.perf_counter() - t0)
    else:
        record("teacher", teacher, 0.0)
    student = teacher
    if "prune" in steps:
        from roots_edge.train.prune import prune_model, pruned_record

        st = steps["prune"]
        t0 = time.perf_counter()
        small, provenance = prune_model(teacher.model, teacher.tokenizer, teacher.spec, st.config,
                                        text_data(st.calibration, "train"), progress=progress)
        student = LoadedModel(small, teacher.tokenizer, teacher.spec, None,
                              pruned_record(teacher.record, teacher.path, provenance))
        student.save(out / "pruned", overwrite=True)
        record("pruned", student, time.perf_counter() - t0,
               {"kept": {k: v["kept"] for k, v in provenance["kept"].items()}})
    if "distill" in steps:
        from roots_edge.train.distill import distill_models, distilled_record, topk_cache

        st = steps["distill"]
        if student is teacher:
            raise RecipeError("[distill] needs a student: add a [prune] step before it")
        t0 = time.perf_counter()
        texts, labels, extra = text_data(st.data), None, []
        if student.spec.task == "classification":
            train, _ = labeled_set(st.data)
            texts, labels = train.texts, train.labels
            extra = text_data(st.unlabeled) if st.unlabeled else []
        ckpt = out / CHECKPOINT
        metrics = distill_models(teacher.model, teacher.tokenizer, teacher.spec, student.model, student.tokenizer,
                                 student.spec, texts, labels, extra, checkpoint_dir=ckpt, progress=progress,
                                 **st.options)
        student.record = distilled_record(student.record, teacher.path, metrics)
        student.save(out / "distilled", overwrite=True)
        shutil.rmtree(ckpt, ignore_errors=True)
        topk_cache(ckpt).unlink(missing_ok=True)
        record("distilled", student, time.perf_counter() - t0,
               {"steps": metrics["steps"], **{k: round(v, 4) for k, v in metrics.items()
                                              if k.startswith(("val_", "teacher_val_"))}})
    artifacts: list[Path] = []
    if "export" in steps:
        from roots_edge.exporters import load_source, plan_exports, run_exports

        st = steps["export"]
        pairs = [("student", student)] + ([("teacher", teacher)] if st.teacher and student is not teacher else [])
        for who, stage in pairs:
            source = load_source(stage)
            for job in plan_exports(st.targets, stage.spec, lambda name, _t: out / "artifacts" / f"{who}-{name}",
                                    force=True):
                t0 = time.perf_counter()
                manifest = run_exports(source, [job])[0]
                artifacts.append(job.out)
                name = job.name
                stages.append({"stage": f"{who} {name}", "folder": str(job.out),
                               "seconds": round(time.perf_counter() - t0, 1),
                               "verification": _verification(manifest)})
                log(f"exported {who} {name}: {stages[-1]['verification']}")
    bench_result = None
    if "bench" in steps and artifacts:
        from roots_edge.runtimes.bench import BenchConfig, bench
        from roots_edge.runtimes.bench.report import plot, to_markdown

        st = steps["bench"]
        cfg = BenchConfig(runs=st.runs, threads=st.threads, prompt_tokens=st.prompt_tokens, gen_tokens=st.gen_tokens,
                          device="cpu")
        texts = truth = None
        if test is not None:
            texts, truth = test.texts, test.labels
        bench_result = bench(artifacts, cfg, teacher.path, texts, truth, progress=progress)
        write_text_atomic(out / "bench.md", to_markdown(bench_result))
        try:
            plot(bench_result, out / "bench.png")
        except Exception as exc:   # matplotlib missing or no display backend: the table still stands
            log(f"no plot: {exc}")
    report = {"recipe": recipe.name, "model": str(model), "stages": stages, "bench": bench_result,
              "seconds": round(time.perf_counter() - t_all, 1)}
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str))
    write_text_atomic(out / "report.md", to_report(report))
    _plot_stages(report, out / "report.png", log)
    return report


def _verification(manifest: dict) -> dict:
    v = manifest.get("verification") or {}
    metrics = v.get("metrics") or {}
    keep = ("top1", "kl", "min_cosine", "agreement", "perplexity")
    return {"passed": v.get("passed"), "size_mb": round(manifest.get("size_bytes", 0) / 1e6, 2),
            **{k: round(metrics[k], 4) for k in keep if isinstance(metrics.get(k), (int, float))}}


def to_report(report: dict) -> str:
    lines = [f"# Compression report: {report['recipe']}", "", f"Model: `{report['model']}`", "",
             "| stage | parameters | quality | seconds | verification |", "|---|---|---|---|---|"]
    for s in report["stages"]:
        quality = ", ".join(f"{k} {v}" for k, v in s.items() if k.endswith(("perplexity", "accuracy")))
        params = f"{s['parameters'] / 1e6:.2f} M" if "parameters" in s else ""
        ver = ", ".join(f"{k} {v}" for k, v in (s.get("verification") or {}).items())
        lines.append(f"| {s['stage']} | {params} | {quality} | {s['seconds']} | {ver} |")
    if report.get("bench"):
        from roots_edge.runtimes.bench.report import to_markdown

        lines += ["", "## Speed and size (one `roots-edge bench` run)", "", to_markdown(report["bench"])]
        ratios = speedups(report["bench"])
        if ratios:
            lines += ["", "Student against teacher, same target, same run:", "",
                      "| target | measure | teacher | student | student speed-up | size ratio |", "|---|---|---|---|---|---|"]
            for r in ratios:
                lines.append(f"| {r['target']} | {r['measure']} | {r['teacher']} | {r['student']} | "
                             f"{r['speedup']:.2f}x | {r['size_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def speedups(result: dict) -> list[dict]:
    """For every target exported for both: the student's speed-up over the teacher (classifiers: batch-1 p50
    latency; decoders: tokens per second generated) and its size relative to the teacher's."""
    rows = {Path(r["artifact"]).name: r for r in result["rows"] if not r.get("reference")}
    out = []
    for name, s in rows.items():
        if not name.startswith("student-") or f"teacher-{name[8:]}" not in rows:
            continue
        t = rows[f"teacher-{name[8:]}"]
        if result["kind"] == "decoder" and s.get("tg_tps") and t.get("tg_tps"):
            measure, tv, sv, speed = "tg t/s", t["tg_tps"], s["tg_tps"], s["tg_tps"] / t["tg_tps"]
        elif s.get("latency_ms_p50") and t.get("latency_ms_p50"):
            measure, tv, sv = "p50 ms (batch 1)", t["latency_ms_p50"], s["latency_ms_p50"]
            speed = t["latency_ms_p50"] / s["latency_ms_p50"]
        else:
            continue
        out.append({"target": name[8:], "measure": measure, "teacher": tv, "student": sv, "speedup": speed,
                    "size_ratio": s["size_bytes"] / max(1, t["size_bytes"])})
    return out


def _plot_stages(report: dict, path: Path, log) -> None:
    """Parameters and quality of each model stage, side by side."""
    rows = [s for s in report["stages"] if "parameters" in s]
    metric = next((k for s in rows for k in s if k.endswith(("perplexity", "accuracy"))), None)
    if not rows or metric is None:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no plot: matplotlib is not installed")
        return
    from roots_edge.core.paths import atomic_file

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    names = [s["stage"] for s in rows]
    axes[0].bar(names, [s["parameters"] / 1e6 for s in rows], color="#4c72b0")
    axes[0].set_ylabel("parameters (M)")
    axes[1].bar(names, [s.get(metric, float("nan")) for s in rows], color="#dd8452")
    axes[1].set_ylabel(metric.replace("_", " "))
    if metric.endswith("perplexity"):
        axes[1].set_yscale("log")     # a pruned model before distillation can be 10x worse
    for ax in axes:
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle(report["recipe"])
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
