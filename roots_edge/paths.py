"""Where roots-edge keeps its cache, and atomic writes for everything it produces."""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator


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


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to `final`.

    An exception (or a kill) leaves only a `.tmp-*` folder, never a `final` that looks complete. The folder gets
    the mode any new folder gets (0755 under the usual umask), not mkdtemp's private 0700: an artifact is made to be
    deployed, often for another user.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~umask())
    try:
        yield tmp
        _readable(tmp)
        if final.exists():
            if not replace:
                raise FileExistsError(final)
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
