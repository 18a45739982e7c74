"""`manifest.json`, typed: what an exporter writes beside an artifact and what runtimes and benchmarks read.

    m = Manifest.read(folder)            # None when the folder has no manifest (a foreign artifact)
    m.precision, m.source.task, m.verification.passed, m.verification.cpu, m.quantization

A leaf: imports only roots_edge.core.errors and roots_edge.core.paths. The JSON keeps its flat layout; format-specific sections (`opset`,
`inputs`, `quantization`, `gguf`, ...) stay top-level keys and are kept in `details`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from roots_edge.core.errors import CorruptModelError
from roots_edge.core.paths import OutputKind, strays_of

FILE = "manifest.json"
SCHEMA = 4  # 2: `schema`, `exporter_revision`, `verification.cpu` are written; 3: `quant`; 4: `parameters`


@dataclass
class SourceInfo:
    path: str = ""
    sha256: str = ""
    architecture: str = ""
    family: str = ""
    task: str = ""                  # "causal-lm", "classification" or "embedding"
    labels: list[str] = field(default_factory=list)


@dataclass
class FileEntry:
    name: str
    bytes: int
    sha256: str


@dataclass
class Verification:
    passed: bool | None = None      # None: skipped
    metrics: dict = field(default_factory=dict)
    bound: dict = field(default_factory=dict)
    texts: int | None = None
    failures: list[str] = field(default_factory=list)
    cpu: dict = field(default_factory=dict)          # runtimes/machine.verification_cpu()
    skipped: str | None = None


@dataclass
class Manifest:
    target: str
    format: str
    precision: str
    quant: dict = field(default_factory=dict)        # exporters/quant.QuantConfig as applied (schema 3)
    source: SourceInfo = field(default_factory=SourceInfo)
    files: list[FileEntry] = field(default_factory=list)
    size_bytes: int = 0
    bits_per_weight: float = 0.0                     # bits of the weight files per parameter
    parameters: int = 0             # of the PyTorch source, tied tensors once; 0: not recorded (schema < 4)
    export_seconds: float = 0.0
    verification: Verification = field(default_factory=Verification)
    versions: dict = field(default_factory=dict)
    created: str = ""
    exporter_revision: int = 1      # manifests from before revisions were recorded are revision 1
    schema: int = SCHEMA
    details: dict = field(default_factory=dict)      # the format's own sections, top-level in the JSON

    @property
    def quantization(self) -> dict:
        return self.details.get("quantization") or {}

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        own = {f.name for f in fields(cls)} - {"details", "source", "files", "verification"}
        known_v = {f.name for f in fields(Verification)}
        known_s = {f.name for f in fields(SourceInfo)}
        v = d.get("verification") or {}
        return cls(**{k: d[k] for k in own if k in d and k != "schema"}, schema=d.get("schema", 1),
                   source=SourceInfo(**{k: val for k, val in (d.get("source") or {}).items() if k in known_s}),
                   files=[FileEntry(f["name"], f["bytes"], f.get("sha256", "")) for f in d.get("files", [])],
                   verification=Verification(**{k: val for k, val in v.items() if k in known_v}),
                   details={k: val for k, val in d.items() if k not in own | {"source", "files", "verification",
                                                                          "schema"}})

    def to_dict(self) -> dict:
        out = asdict(self)
        details = out.pop("details")
        out["verification"] = {k: val for k, val in out["verification"].items() if val not in (None, [], {})
                               or k == "passed"}
        return {**out, **details}

    @classmethod
    def read(cls, folder: str | Path) -> "Manifest | None":
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return cls.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:   # JSONDecodeError, UnicodeDecodeError too
            raise CorruptModelError(f"{path} is not a readable manifest ({exc}); the artifact is damaged: export it "
                                    f"again or copy it again") from None

    def write(self, folder: str | Path) -> None:
        (Path(folder) / FILE).write_text(json.dumps(self.to_dict(), indent=2, default=str))


def _artifact_strays(folder: Path) -> list[str]:
    """What an export did not write in `folder`: everything but manifest.json and the files it lists (all of
    it when there is no readable manifest)."""
    try:
        m = Manifest.read(folder)
    except CorruptModelError:
        m = None
    listed = {FILE, *(f.name for f in m.files)} if m is not None else set()
    return strays_of(Path(folder), listed.__contains__)


ARTIFACT = OutputKind("an artifact folder (manifest.json and the files it lists)", _artifact_strays, "onnx-int8")
