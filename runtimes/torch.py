"""The PyTorch backend: a Hugging Face folder run with transformers (the reference, and torch MPS/CUDA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from roots_edge.runtimes.base import (Backend, FormatFacts, RuntimeLoadError, choose_context, encode_batch, load_tokenizer, mean_pool, plain_tokenizer,
                   read_json)
from roots_edge.runtimes.chat import folder_template
from roots_edge.runtimes.devices import place


class TorchBackend(Backend, format="torch"):
    facts = FormatFacts(module="torch", suffix=None, markers=("config.json",), weights=("*.safetensors",),
                        libraries=("torch", "transformers"), extra="train", version_key="torch")

    @classmethod
    def claims(cls, path: Path) -> bool:
        """A Hugging Face folder: its config and safetensors weights."""
        return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, *, context: int | None = None,
                 exact: bool = False):
        """`context`: the tokens a decoder may hold; `exact` changes nothing (float32 throughout)."""
        import torch

        from roots_edge.core.errors import RootsEdgeError
        from roots_edge.data.folder import check_folder, load_torch

        if threads:
            torch.set_num_threads(threads)
        try:
            spec = check_folder(Path(path))
            model, _ = load_torch(Path(path), spec)
        except RootsEdgeError as exc:
            raise RuntimeLoadError(str(exc)) from None
        eos = read_json(Path(path) / "generation_config.json").get("eos_token_id", spec.eos_token_id)
        self._setup(model, load_tokenizer(path), spec, eos, place("torch", device), Path(path), context,
                    folder_template(Path(path)))

    @classmethod
    def from_model(cls, model, tokenizer, spec, path: Path | None = None, device: str = "cpu",
                   context: int | None = None) -> "TorchBackend":
        """Over a transformers model already in memory (what `LanguageModel` holds): its fast tokenizer's
        `tokenizers.Tokenizer` (a copy), EOS from its generation config."""
        from tokenizers import Tokenizer

        tok = plain_tokenizer(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()))
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        self = cls.__new__(cls)
        self._setup(model, tok, spec, spec.eos_token_id if eos is None else eos, place("torch", device), path, context,
                    getattr(tokenizer, "chat_template", None))
        return self

    def _setup(self, model, tok, spec, eos, placement, path: Path | None, context: int | None,
               template: str | None = None) -> None:
        import torch

        self.torch, self.spec, self.placement, self.path, self.tok = torch, spec, placement, path, tok
        self.task = spec.task   # from config.json's architectures: EdgeModel refuses a verb the head lacks
        self.model = model.to(placement.setting)
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.max_context = spec.context_length
        self.context_length = choose_context(context, spec.context_length, path or spec.architecture) \
            if spec.task == "causal-lm" else spec.context_length
        self.labels = self.spec.labels
        self.pad_id = self.spec.pad_token_id if self.spec.pad_token_id is not None else 0
        self.bos_id = spec.bos_token_id
        self.chat_template = template
        self.cache = None

    # decoder primitives -------------------------------------------------------
    def _needs(self, task: str, what: str) -> None:
        """The contract's refusal (runtimes/base.py): a verb this model's head does not have."""
        if self.task != task:
            raise NotImplementedError(f"{self.spec.architecture} is a {self.task} model; it has no {what}")

    def reset(self) -> None:
        from transformers import DynamicCache

        self._needs("causal-lm", "KV cache")
        self.cache = DynamicCache(config=self.model.config)

    def forward(self, ids: np.ndarray) -> np.ndarray:
        self._needs("causal-lm", "next-token logits")
        torch = self.torch
        x = torch.from_numpy(np.asarray(ids, dtype=np.int64).reshape(1, -1)).to(self.placement.setting)
        with torch.no_grad():
            out = self.model(input_ids=x, cache=self.cache, use_cache=True)
        self.cache = out.cache
        return out.logits[0, -1].float().cpu().numpy()

    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        self._needs("causal-lm", "next-token logits")
        torch = self.torch
        with torch.no_grad():
            out = self.model(input_ids=torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(self.placement.setting))
        return out.logits[0].float().cpu().numpy()

    # encoders -------------------------------------------------------------------
    def _encode(self, texts):
        torch = self.torch
        ids, mask = encode_batch(self.tok, texts, self.pad_id)
        return {"input_ids": torch.from_numpy(ids).to(self.placement.setting),
                "attention_mask": torch.from_numpy(mask).to(self.placement.setting)}, mask

    def classify_logits(self, texts):
        self._needs("classification", "classification head")
        enc, _ = self._encode(texts)
        with self.torch.no_grad():
            return self.model(**enc).logits.float().cpu().numpy()

    def embed(self, texts):
        enc, mask = self._encode(texts)
        with self.torch.no_grad():
            hidden = self.model(**enc, output_hidden_states=True).hidden_states[-1].float().cpu().numpy()
        return mean_pool(hidden, mask)

    # text -------------------------------------------------------------------------
    def info(self) -> dict:
        size = sum(p.stat().st_size for p in self.path.glob("*.safetensors")) if self.path else 0
        return {"format": "torch", "precision": "fp32", "backend": "torch", "device": self.placement.device,
                "setting": self.placement.setting, "file_size": size, "context_length": self.context_length,
                "max_context": self.max_context,
                "task": self.task, "labels": self.labels}
