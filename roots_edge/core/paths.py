"""Where roots-edge keeps its cache, and atomic writes for everything it produces."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from roots_edge.core.errors import OutputExistsError, OutputPathError


# the temporary folders and files of writes in progress (atomic_dir / atomic_file), for a hard stop to remove
IN_PROGRESS: set[Path] = set()


def home() -> Path:
    """`$ROOTS_EDGE_HOME`, else `$XDG_CACHE_HOME/roots-edge`, else `~/.cache/roots-edge`."""
    env = os.environ.get("ROOTS_EDGE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "roots-edge"


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MB chunks."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- replacing
@dataclass(frozen=True)
class OutputKind:
    """What one kind of output folder holds, so that `--force` replaces exactly that and nothing else.

    `strays(folder)` lists the entries (relative paths) of an existing folder that this kind of output does not
    account for; a folder is replaceable only when that list is empty. Each writer declares its kind where it is
    defined (an artifact in `manifest.py`, a model folder in `modelio.py`, a bundle in `deploy.py`, ...)."""

    name: str                                   # "an artifact folder (manifest.json and the files it lists)"
    strays: Callable[[Path], list[str]]
    example: str = "out"                        # a new folder name to suggest in refusals

    def check(self, out: Path, option: str = "--output") -> None:
        """Raise `OutputExistsError` unless `out` may be replaced by an output of this kind: absent, an empty
        folder, or a folder every entry of which this kind accounts for. Never the folder the process runs in
        (or one holding it)."""
        out = Path(out)
        if holds_cwd(out):
            raise OutputExistsError(f"{option} {out} is the current folder (or holds it): an output replaces its "
                                    f"folder whole; name a new folder inside it instead (e.g. {option} "
                                    f"./{self.example})")
        if not out.exists() and not out.is_symlink():
            return
        if not out.is_dir() or out.is_symlink():
            raise OutputExistsError(f"{option} {out} is {'a link' if out.is_symlink() else 'a file'}, not "
                                    f"{self.name}; --force replaces only that: choose another {option}")
        extra = self.strays(out)
        if extra:
            shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
            raise OutputExistsError(f"{option} {out} holds what this command does not write: {shown}. --force "
                                    f"replaces only {self.name}; nothing was changed. Choose a new folder (or "
                                    f"move those files away)")


def holds_cwd(path: Path) -> bool:
    """Whether `path` is the current working folder or one of its parents."""
    try:
        here, there = Path.cwd().resolve(), Path(path).resolve()
    except OSError:
        return False
    return there == here or there in here.parents


def entries(folder: Path) -> list[str]:
    """Every file (and link) under `folder` as a relative POSIX path, folders as 'name/' only when empty.
    Links are listed, never followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in links]
        found += [(rel / name).as_posix() for name in sorted(files + links)]
        if not dirs and not files and not links and rel != Path("."):
            found.append(rel.as_posix() + "/")
    return found


def strays_of(folder: Path, owned: Callable[[str], bool]) -> list[str]:
    """The entries under `folder` that `owned(relative_path)` does not claim; a top-level folder none of whose
    entries is claimed is named once (`notes/`), not file by file."""
    found = entries(folder)
    claimed_tops = {e.split("/", 1)[0] for e in found if owned(e)}
    shown = set()
    for e in found:
        if not owned(e):
            top, sep, _ = e.partition("/")
            shown.add(f"{top}/" if sep and top not in claimed_tops else e)
    return sorted(shown)


# Folders roots-edge names itself (hidden checkpoints, its cache): whatever they hold is its own.
INTERNAL = OutputKind("a folder roots-edge keeps for itself", lambda folder: [])


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: OutputKind | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `final`.

    An exception (or a kill) leaves only a `.tmp-*` folder, never a `final` that looks complete. The folder gets
    the mode any new folder gets (0755 under the usual umask), not mkdtemp's private 0700: an artifact is made to be
    deployed, often for another user. An existing `final` is replaced only when `replace` is given and accounts
    for everything in it (`OutputKind.check`, run before any work and again at the rename).
    """
    final = Path(final)
    if replace is not None:
        replace.check(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~umask())
    IN_PROGRESS.add(tmp)
    try:
        yield tmp
        _readable(tmp)
        if final.exists():
            if replace is None:
                raise FileExistsError(final)
            replace.check(final)
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        IN_PROGRESS.discard(tmp)


def remove_stale(final: Path) -> list[Path]:
    """Delete the `.tmp-<name>-<pid>-*` siblings of `final` that a killed run left (their process is gone), so
    that an interrupted export costs nothing but a rerun. A live process's folder is left alone."""
    removed = []
    prefix = f".tmp-{final.name}-"
    for tmp in final.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":   # Windows: signal 0 is CTRL_C_EVENT, not a probe; keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True                       # someone else's process, or we cannot tell: keep its folder
    return True


def _readable(folder: Path) -> None:
    """Give every file and folder under `folder` the read (and, for folders, search) bits the umask allows:
    libraries write some files privately (transformers' weights come out 0600)."""
    mask = umask()
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            path = os.path.join(root, name)
            os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | (0o555 & ~mask))
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | (0o444 & ~mask))


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it over `final`, with the mode any new file gets (0644
    under the usual umask) rather than mkstemp's 0600."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{final.name}-{os.getpid()}-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~umask())
    IN_PROGRESS.add(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        IN_PROGRESS.discard(tmp)


def remove_in_progress() -> None:
    """Delete every temporary output this process is writing: what a hard stop (a signal that could not unwind
    the writers in time) calls before it exits."""
    for tmp in list(IN_PROGRESS):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        IN_PROGRESS.discard(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_output(output: str | Path, force: bool, kind, option: str = "--output") -> Path:
    """`output` as a Path once it is known to be writable, checked before any expensive work: it must not exist
    (unless `force`, and then it must be a folder of `kind`, a `paths.OutputKind`, holding nothing else), and the
    nearest folder that does exist on its way must be a folder this user can write."""
    if str(output).strip() == "":
        raise OutputPathError(f"{option} is empty; give a folder to write")
    out = Path(output).expanduser()
    if out.exists() and not force and not holds_cwd(out):
        raise OutputExistsError(f"{out} already exists; choose another {option} or pass --force (which "
                                f"replaces only {kind.name})")
    kind.check(out, option)             # the current folder, a file, or a folder holding anything else: refused
    return writable(out, option)


def writable(out: Path, option: str) -> Path:
    """`out` when the nearest folder that exists on its way is a folder this user can write."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{option} {out}: {parent} is a file, not a folder; choose another {option}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {out}: the folder {parent} is not writable by this user (or is on a "
                              f"read-only file system); choose another {option}")
    return out
