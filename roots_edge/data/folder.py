"""Model folders: the Hugging Face layout plus `roots_edge.json`, the record of how a model was made.

Only safetensors weights are read; a folder that holds only pickled weights (`pytorch_model.bin`)
is refused with a message saying how to convert it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from roots_edge.core.errors import CorruptModelError, ModelNotFoundError, NotAModelError
from roots_edge.core.paths import OutputKind, atomic_dir, home, strays_of
from roots_edge.core.spec import ModelSpec, read_spec

RECORD = "roots_edge.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_model_dir() -> Path:
    return home() / "models" / "default"


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


# Bits per element of every dtype the safetensors format defines (its reader refuses any other name).
SAFETENSORS_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
                    "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16,
                    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}


def verify_safetensors(path: Path) -> dict:
    """Parse a safetensors header and check that the file holds every byte it promises: every length and offset
    read from the file is bounded by the file's size before it is used, every tensor's byte range matches its
    dtype and shape, and the ranges end exactly at the end of the file."""
    size = path.stat().st_size
    hint = "re-export or re-download it"
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptModelError(f"{path} is {size} bytes: too short to be a safetensors file; {hint}")
        n = int.from_bytes(head, "little")
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise CorruptModelError(f"{path} is not a safetensors file (header length {n:,}, file {size:,} bytes); "
                                    f"{hint}")
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError):          # JSONDecodeError, UnicodeDecodeError, absurd nesting
            raise CorruptModelError(f"{path} has a corrupt safetensors header (not JSON); {hint}") from None
    if not isinstance(header, dict):
        raise CorruptModelError(f"{path} has a corrupt safetensors header (a JSON {type(header).__name__}, "
                                f"not an object); {hint}")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CorruptModelError(f"{path} has a corrupt safetensors header (__metadata__ must map names to "
                                f"strings); {hint}")
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        problem = _tensor_entry_problem(entry)
        if problem:
            raise CorruptModelError(f"{path} has a corrupt safetensors header: tensor {name[:80]!r} {problem}; {hint}")
        ranges.append((*entry["data_offsets"], name))
    end = 0
    for begin, stop, name in sorted(ranges):      # the tensors tile the data: no gap, no overlap
        if begin != end:
            raise CorruptModelError(f"{path} has a corrupt safetensors header: tensor {name[:80]!r} starts at "
                                    f"byte {begin:,} of the data, the previous tensor ends at {end:,}; {hint}")
        end = stop
    if 8 + n + end != size:
        raise CorruptModelError(f"{path} is truncated or corrupt: its header promises {8 + n + end:,} bytes, "
                                f"the file has {size:,}; {hint}")
    return header


def _tensor_entry_problem(entry) -> str | None:
    """What is wrong with one tensor's header entry ({"dtype", "shape", "data_offsets"}), or None."""
    if not isinstance(entry, dict):
        return f"is a JSON {type(entry).__name__}, not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        return f"has dtype {dtype!r}"
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return f"has shape {str(shape)[:80]} (expected a list of non-negative integers)"
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        return f"has data_offsets {str(offsets)[:80]} (expected [begin, end], 0 <= begin <= end)"
    bits = SAFETENSORS_BITS.get(dtype)
    if bits is None:
        return f"has dtype {dtype[:20]!r}, not a safetensors dtype"
    count = 1
    for d in shape:
        count *= d
    if count * bits != 8 * (offsets[1] - offsets[0]):
        return f"has {offsets[1] - offsets[0]:,} bytes for {dtype} of shape {shape} ({count * bits / 8:,g} expected)"
    return None


def check_folder(folder: Path) -> ModelSpec:
    """A readable model folder of a supported family, or a clear error."""
    if not folder.exists():
        raise ModelNotFoundError(f"model path {folder} does not exist. Give a local Hugging Face folder "
                                 "(config.json + model.safetensors + tokenizer.json), or omit it for the default model.")
    if not folder.is_dir():
        raise NotAModelError(f"{folder} is a file; a model is a folder with config.json, "
                             "model.safetensors and tokenizer.json")
    spec = read_spec(folder)
    weights = weight_files(folder)
    if not weights:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = (f" It holds {pickled}: pickled weights are never loaded (they can run code). Convert them "
                "once, in a trusted environment, with `model.save_pretrained(dir, safe_serialization=True)`."
                if pickled else "")
        raise NotAModelError(f"{folder} has no model.safetensors.{hint}")
    missing = [p.name for p in weights if not p.is_file()]
    if missing:
        raise CorruptModelError(f"{folder}: weight shards {missing} named in the index are missing")
    for w in weights:
        verify_safetensors(w)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise NotAModelError(f"{folder} has no tokenizer (tokenizer.json or vocab.txt)")
    return spec


def resolve(model: str | Path, *, allow_download: bool = False) -> Path:
    """A local folder for `model`: a path, or a Hub id fetched only when `allow_download`. The embedded
    default model is `pretrain.ensure_default_model()`, an explicit call (it may train for minutes)."""
    path = Path(model).expanduser()
    if path.exists() or not HUB_ID.match(str(model)):
        check_folder(path)
        return path
    if not allow_download:
        raise ModelNotFoundError(
            f"{model!r} is not a local folder. It looks like a Hugging Face Hub id, but roots-edge never "
            "downloads unless asked: pass allow_download=True (CLI: --download) while online, or give a local folder.")
    return _download(str(model))


def _download(repo_id: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("ROOTS_EDGE_OFFLINE"):
        raise ModelNotFoundError(f"cannot fetch {repo_id!r}: offline mode is set (HF_HUB_OFFLINE). "
                                 "Download it elsewhere and pass the local folder.")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as exc:  # network errors come in many classes; all mean the same to the user
        raise ModelNotFoundError(f"could not fetch {repo_id!r} from the Hugging Face Hub "
                                 f"({type(exc).__name__}: {exc}). Are you online? Or pass a local folder.") from None
    check_folder(Path(local))
    return Path(local)


def read_record(folder: Path) -> dict:
    path = Path(folder) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def folder_hash(folder: Path) -> str:
    """sha256 over the weights and config: identifies the exact model an artifact came from."""
    h = hashlib.sha256()
    for p in [folder / "config.json", *weight_files(folder)]:
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    from roots_edge.core.versions import versions as installed

    return installed(("torch", "transformers", "tokenizers"))


def load_torch(folder: Path, spec: ModelSpec | None = None):
    """(model, tokenizer) from a local folder, through transformers, safetensors only."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    spec = spec or check_folder(folder)
    cls = getattr(transformers, spec.architecture)
    try:
        model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True,
                                          dtype="float32")
    except Exception as exc:  # safetensors and transformers raise many classes for one meaning
        raise CorruptModelError(f"{folder}: the weights could not be read ({exc}). The file may be truncated "
                                "or corrupt: re-export or re-download it.") from None
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if bad:
        raise CorruptModelError(f"{folder}: weights do not match config.json: {bad}")
    model.eval()
    return model, load_hf_tokenizer(folder)


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_hf_tokenizer(folder: Path):
    """The transformers tokenizer of a folder. One saved as a generic class (what roots-edge writes) loads as
    tokenizer.json says, exactly as the runtimes read it: transformers 5 would otherwise rebuild it as the
    model family's own class (a Qwen2 config turns it into Qwen's NFC + digit-splitting pipeline)."""
    import json

    import transformers

    config = Path(folder) / "tokenizer_config.json"
    try:
        declared = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") if config.is_file() else None
    except (ValueError, AttributeError):
        raise CorruptModelError(f"{config} is not a JSON object; the model folder is damaged: copy or download "
                                f"it again") from None
    try:
        if declared in GENERIC_TOKENIZERS and (Path(folder) / "tokenizer.json").is_file():
            return transformers.TokenizersBackend.from_pretrained(folder)
        return transformers.AutoTokenizer.from_pretrained(folder)
    except Exception as exc:       # tokenizers, json and transformers each raise their own classes
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CorruptModelError(f"{folder}: its tokenizer (tokenizer.json / tokenizer_config.json) could not be "
                                f"read ({first}); copy or download the folder again") from None


# What `save_folder` writes: transformers' model and tokenizer files, and our record. A folder holding anything
# else (a user's notes, a model card, other models) is not ours to replace.
MODEL_FILES = (RECORD, "config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
               "chat_template.jinja", "chat_template.json", "vocab.txt", "vocab.json", "merges.txt")


def _model_strays(folder: Path) -> list[str]:
    from fnmatch import fnmatch

    if not (Path(folder) / RECORD).is_file():      # not written by roots-edge: nothing in it is ours
        return strays_of(Path(folder), lambda name: False)
    return strays_of(Path(folder), lambda name: any(fnmatch(name, pattern) for pattern in MODEL_FILES))


MODEL_FOLDER = OutputKind(f"a model folder roots-edge wrote ({RECORD}, config, weights, tokenizer)", _model_strays)


def save_folder(model, tokenizer, out: Path, record: dict | None = None, *, overwrite: bool = False) -> Path:
    """Write a model folder atomically: config, safetensors weights, tokenizer, generation config, record.
    `overwrite` replaces a model folder roots-edge wrote before, never a folder holding anything else."""
    out = Path(out)
    if out.exists() and not overwrite:
        from roots_edge.core.errors import OutputExistsError

        raise OutputExistsError(f"{out} already exists; choose another output or pass --force")
    with atomic_dir(out, replace=MODEL_FOLDER) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        rec = dict(record or {})
        rec.setdefault("versions", versions())
        (tmp / RECORD).write_text(json.dumps(rec, indent=2, default=str))
    return out


class LoadedModel:
    """A model in memory: the PyTorch model and tokenizer, its family spec, the folder it came from (None until
    saved) and the record of how it was made. The one holder: `LanguageModel` is one, the exporters' `Source`
    wraps one, and each stage of a compression recipe is one."""

    def __init__(self, model, tokenizer, spec: ModelSpec, path: Path | None = None, record: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.path = Path(path) if path is not None else None
        self.record = dict(record or {})

    @classmethod
    def load(cls, folder: str | Path, *, allow_download: bool = False):
        """A model folder (or, with `allow_download`, a Hub id), checked before torch loads it."""
        folder = resolve(folder, allow_download=allow_download)
        spec = check_folder(folder)
        model, tokenizer = load_torch(folder, spec)
        return cls(model, tokenizer, spec, Path(folder), read_record(folder))

    def save(self, out: Path, *, overwrite: bool = False) -> Path:
        """Write the model folder (atomically) and hold it from there on; the spec is read again from what was
        written (pruning changes the shape)."""
        self.path = save_folder(self.model, self.tokenizer, Path(out), self.record, overwrite=overwrite)
        self.spec = ModelSpec.from_hf_config(self.model.config.to_dict())
        return self.path

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
