"""One exception class per kind of failure. The CLI turns them into click errors at its edge."""


class RootsEdgeError(Exception):
    """Base class: every error roots-edge raises on purpose derives from it."""


class ModelNotFoundError(RootsEdgeError):
    """A model path or id that does not exist (or cannot be fetched offline)."""


class NotAModelError(RootsEdgeError):
    """A folder exists but is not a model folder (no config.json, no weights, ...)."""


class UnsupportedModelError(RootsEdgeError):
    """A model of an architecture or family roots-edge does not support."""


class CorruptModelError(RootsEdgeError):
    """A model file that is truncated, corrupt or whose tensors do not match its config."""


class DataError(RootsEdgeError):
    """Training or evaluation data that cannot be used: empty, missing columns, one class, ..."""


class RecipeError(RootsEdgeError):
    """A training recipe that is missing, malformed or inconsistent."""


class TargetError(RootsEdgeError):
    """An unknown export target, or one that does not fit the model."""


class VerificationError(RootsEdgeError):
    """An exported artifact drifted past its precision's bound."""


class OutputExistsError(RootsEdgeError):
    """An output path that already exists and was not allowed to be overwritten."""


class OutputPathError(RootsEdgeError):
    """An output path that cannot be written: under a file, in a read-only or unwritable folder."""


# ---- the runtime's errors: runtimes/ import these (this module imports nothing, so no torch either)
class RuntimeLoadError(RootsEdgeError):
    """An artifact that cannot be opened: missing, truncated, corrupt or of an unknown format."""


class DeviceError(RootsEdgeError):
    """A device that this machine (or this backend) does not offer."""


class GenerationError(RootsEdgeError, ValueError):
    """Generation settings or a prompt that cannot be run (a ValueError too, as before)."""


class ContextOverflowError(GenerationError):
    """A prompt that does not fit the model's context."""


class TextInputError(RootsEdgeError, ValueError):
    """Text that cannot be run: not a string, empty, too long, or not valid Unicode (undecodable bytes, lone
    surrogates)."""


class TaskError(RootsEdgeError, ValueError):
    """A verb the model's task does not offer: generating with a classifier, classifying with a decoder."""


class BackendError(RootsEdgeError):
    """A runtime library failed on input it had accepted (llama_decode returned an error, say)."""


class BenchError(RootsEdgeError):
    """A benchmark that cannot run as asked (a count out of range, labels that do not match the texts), or a
    measurement that failed (the worker's own message says why)."""
