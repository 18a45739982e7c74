"""`LanguageModel`: the PyTorch-side facade of the original write-up.

    model = LanguageModel.from_pretrained(path)      # no argument: the embedded default
    model.finetune(texts, labels)                    # labels may be ints or names
    model.predict("This is a great movie!")          # -> {"label": ..., "score": ...}
    model.generate("Return the", max_new_tokens=40)  # decoders
    model.save_pretrained(out_dir)
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from roots_edge.core.errors import DataError, TaskError, UnsupportedModelError
from roots_edge.core.spec import ModelSpec
from roots_edge.data.folder import LoadedModel

# a model's task -> what it is and the verb it offers, for refusing the verbs it does not
TASK_WORDS = {"causal-lm": ("a text generator (causal LM)", "generate()"),
              "classification": ("a classifier", "predict()"),
              "embedding": ("an embedding model (no task head)", "embed()")}


def _check_text(text) -> str:
    """The runtime's one text check (a TextInputError: not a str, blank, too long, not valid Unicode)."""
    from roots_edge.runtimes.base import check_text

    return check_text(text)


class LanguageModel(LoadedModel):
    """The facade over one loaded model (`roots_edge.data.folder.LoadedModel`: model, tokenizer, spec, path,
    record): training, compression, export and generation as methods."""

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, allow_download: bool = False) -> "LanguageModel":
        """A local Hugging Face folder of a supported family; None builds or reuses the default model."""
        return cls.load(cls.locate(path, allow_download=allow_download))

    @staticmethod
    def locate(path: str | Path | None = None, *, allow_download: bool = False) -> Path:
        """The checked model folder `from_pretrained` would load, without loading it (torch is not imported):
        callers check what can be checked from its config before the slow part."""
        from roots_edge.data.folder import resolve

        if path is None:
            from roots_edge.train.pretrain import ensure_default_model

            return ensure_default_model()
        return resolve(path, allow_download=allow_download)

    def save_pretrained(self, out: str | Path, *, overwrite: bool = True) -> Path:
        from roots_edge.data.folder import save_folder

        record = dict(self.record)
        record.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.path = save_folder(self.model, self.tokenizer, Path(out), record, overwrite=overwrite)
        return self.path

    # ------------------------------------------------------------------ training
    def finetune(self, texts: Sequence[str], labels: Sequence | None = None, *, progress: bool = True, **kwargs) -> dict:
        """With labels: train a sequence classifier (labels kept by name). Without: causal-LM finetuning."""
        if labels is None:
            return self._finetune_lm(texts, progress=progress, **kwargs)
        from roots_edge.train.classifier import FinetuneConfig, finetune_classifier
        from roots_edge.data.corpora import check_labeled
        from roots_edge.core.config import build
        from roots_edge.core.spec import ModelSpec

        cfg = build(FinetuneConfig, kwargs, "finetune")
        data = check_labeled(texts, labels)
        clf, metrics = finetune_classifier(self.model, self.tokenizer, self.spec, data, cfg, progress=progress)
        self.record.setdefault("history", []).append({"kind": "finetune-classification", "from": str(self.path),
                                                      "metrics": metrics})
        self.model = clf
        self.spec = ModelSpec.from_hf_config(clf.config.to_dict())
        self.path = None  # in memory only until save_pretrained
        return metrics

    def _finetune_lm(self, texts, *, progress: bool = True, steps: int = 200, lr: float = 3e-4, seq_len: int | None = None,
                     seed: int = 0) -> dict:
        import math

        from roots_edge.data.corpora import Corpus
        from roots_edge.core.config import build
        from roots_edge.train.recipe import TrainConfig
        from roots_edge.train.lm import TokenStream, stream_nll, train_lm

        if not self.spec.is_decoder or self.spec.task != "causal-lm":
            raise UnsupportedModelError("finetuning on plain text needs a causal LM (Llama); "
                                        "for an encoder give labels to train a classifier")
        build(TrainConfig, {"steps": steps, "lr": lr, "seed": seed} | ({"seq_len": seq_len} if seq_len else {}),
                 "finetune")
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            raise DataError("no text to finetune on")
        corpus = Corpus.from_documents(texts, "finetune")
        streams = TokenStream.encode(self.tokenizer.backend_tokenizer, corpus, self.spec.eos_token_id)
        seq = seq_len or min(self.spec.context_length, 256)
        seq = min(seq, len(streams.train) - 2)
        if seq < 8:
            raise DataError(f"the finetuning text has only {len(streams.train)} tokens; give more text")
        cfg = TrainConfig(seed=seed, steps=steps, lr=lr, seq_len=seq, warmup=0.1, eval_every=max(10, steps // 10),
                          checkpoint_every=10**9)
        if len(streams.val) > seq:
            before, _ = stream_nll(self.model, streams.val, seq, cfg.max_eval_tokens)
        else:
            before = float("nan")
        result = train_lm(self.model, streams, cfg, progress=progress, desc="finetune")
        self.path = None  # in memory only until save_pretrained
        metrics = {"steps": result.steps, "seconds": round(result.seconds, 1),
                   "val_perplexity_before": math.exp(before) if before == before else None,
                   "val_perplexity": math.exp(result.best) if result.best < float("inf") else None}
        self.record.setdefault("history", []).append({"kind": "finetune-lm", "metrics": metrics})
        return metrics

    # ------------------------------------------------------------------ compression
    def prune(self, config=None, texts: Sequence[str] | None = None, *, progress: bool = True, **fractions) -> "LanguageModel":
        """A smaller dense copy of this model (`roots_edge.train.prune.PruneConfig`, or its fields as keywords:
        `model.prune(heads=0.5, ffn=0.5, layers=2)`), ranked on `texts` (default: the standard-library
        docstrings). This model is left as it is."""
        from roots_edge.train.prune import PruneConfig, prune_model, pruned_record

        cfg = config if config is not None else PruneConfig(**fractions)
        if texts is None and not cfg.is_identity:
            from roots_edge.data.corpora import stdlib_docstrings

            texts = stdlib_docstrings().train
        pruned, provenance = prune_model(self.model, self.tokenizer, self.spec, cfg, list(texts or []),
                                         progress=progress)
        return LanguageModel(pruned, self.tokenizer, ModelSpec.from_hf_config(pruned.config.to_dict()), None,
                             pruned_record(self.record, self.path, provenance))

    def distill(self, teacher: "LanguageModel", texts: Sequence[str], labels: Sequence | None = None, *,
                unlabeled: Sequence[str] = (), checkpoint_dir: str | Path | None = None, progress: bool = True,
                **options) -> dict:
        """Train this model (the student) toward `teacher` on `texts` (`roots_edge.train.distill.DistillConfig` fields as
        keywords: steps, lr, temperature, alpha, top_k, ...). Causal LMs learn the teacher's next-token
        distributions on the text; classifiers its soft labels (`labels` for the hard-label term, `unlabeled`
        texts labelled by the teacher alone); embedders its sentence embeddings. Returns the metrics."""
        from roots_edge.train.distill import distill_models, distilled_record

        metrics = distill_models(teacher.model, teacher.tokenizer, teacher.spec, self.model, self.tokenizer, self.spec,
                                 texts, labels, unlabeled, checkpoint_dir=checkpoint_dir, progress=progress,
                                 **options)
        self.record = distilled_record(self.record, teacher.path, metrics)
        self.path = None   # in memory only until save_pretrained
        return metrics

    # ------------------------------------------------------------------ inference (PyTorch reference)
    def _require(self, task: str, verb: str) -> None:
        """A TaskError, before any forward pass, when this model's head (its config.json architecture) cannot
        `verb`."""
        if self.spec.task == task:
            return
        kind, use = TASK_WORDS.get(self.spec.task, (f"a {self.spec.task} model", "another verb"))
        lacks = "has no classification head" if task == "classification" else "is not a causal LM"
        fix = "; train a classifier first: model.finetune(texts, labels)" if task == "classification" else ""
        raise TaskError(f"{self.spec.architecture} {lacks}: it is {kind} and cannot {verb} (use {use}){fix}")

    def _runtime(self):
        """This model (as it is now) behind the runtime's API: the one inference path of every backend. Made
        again only when the model, tokenizer or path changed (finetuning replaces the model)."""
        from roots_edge.runtimes.edge import EdgeModel
        from roots_edge.runtimes.torch import TorchBackend

        key = (id(self.model), id(self.tokenizer), self.path)   # the cached backend keeps both objects alive
        if getattr(self, "_edge_key", None) != key:
            backend = TorchBackend.from_model(self.model, self.tokenizer, self.spec, self.path)
            self._edge, self._edge_key = EdgeModel(backend, self.path or Path(".")), key
        return self._edge

    def predict(self, text: str | Sequence[str]):
        """{"label", "score"} for one text, a list of them for a list."""
        self._require("classification", "classify")
        single = isinstance(text, str)
        texts = [_check_text(t) for t in ([text] if single else list(text))]
        out = [{"label": p["label"], "score": p["score"]} for p in self._runtime().classify(texts)]
        return out[0] if single else out

    def generate(self, prompt: str, max_new_tokens: int = 40, *, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> str:
        """The continuation of `prompt`, through the runtime's decode loop and sampler: the same arguments give
        the same text as `roots_edge.load(folder).generate(...)` on this model's folder or its f32 artifacts."""
        from roots_edge.core.errors import GenerationError

        self._require("causal-lm", "generate text")
        _check_text(prompt)
        try:
            return self._runtime().generate(prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                                            top_p=top_p, seed=seed, stop=stop)
        except GenerationError as exc:   # a prompt longer than the context, settings out of range
            raise DataError(str(exc)) from None

    def chat(self, messages, max_new_tokens: int = 256, **kwargs) -> str:
        """The reply to `messages` under the model's chat template (see `roots_edge.runtimes.edge.EdgeModel.chat`):
        the same text the exported artifacts give."""
        self._require("causal-lm", "chat")
        return self._runtime().chat(messages, max_new_tokens, **kwargs)

    def embed(self, texts: str | Sequence[str]):
        """Mean-pooled, L2-normalised last hidden states (numpy, one row per text)."""
        single = isinstance(texts, str)
        pooled = self._runtime().embed([_check_text(t) for t in ([texts] if single else list(texts))])
        return pooled[0] if single else pooled

    def evaluate(self, texts: Sequence[str], labels: Sequence | None = None):
        """Perplexity report for a causal LM on texts; a classifier report with labels."""
        from roots_edge.train.classifier import report
        from roots_edge.data.corpora import check_labeled
        from roots_edge.train.evaluate import perplexity

        if labels is not None:
            return report(self.model, self.tokenizer, check_labeled(texts, labels))
        return perplexity(self.model, self.tokenizer, list(texts), min(self.spec.context_length, 256))

    def export(self, target: str, out: str | Path, *, force: bool = False, **options) -> dict:
        """Export to `target` (e.g. "gguf-q4") in folder `out`, verified against this model; returns the manifest.

        `options` are quantization settings (`QuantConfig` fields: group_size, method, ratio, activations,
        classes={"output": "int8"}) and `ExportOptions` fields (calibration, opset, verify_texts, ...).
        """
        from roots_edge.exporters import load_source, plan_exports, run_exports

        jobs = plan_exports([target], self.spec, Path(out), force=force, **options)
        return run_exports(load_source(self), jobs)[0]

    def info(self) -> dict:
        n = sum(p.numel() for p in self.model.parameters())
        return {"path": str(self.path) if self.path else None, "family": self.spec.family,
                "architecture": self.spec.architecture, "task": self.spec.task, "parameters": n,
                "labels": self.spec.labels, "spec": self.spec.to_dict(),
                "metrics": self.record.get("metrics")}

    def __repr__(self) -> str:
        return f"LanguageModel({self.spec.architecture}, path={str(self.path)!r})"
