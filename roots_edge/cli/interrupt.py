"""Ctrl-C and SIGTERM stop every command within a second or two: exit 130 / 143, one line, no traceback, no
partial output.

Python runs a signal handler only between bytecodes of the main thread, so a command deep inside a native call
(OpenVINO compiling, NNCF gathering statistics, llama.cpp quantizing) would not notice for many seconds. So the
signal's wakeup byte (`signal.set_wakeup_fd`, written by the C-level handler at once) also reaches a watcher
thread. The main thread gets `GRACE` seconds to unwind by itself (its `KeyboardInterrupt` removes the temporary
outputs of the atomic writers on the way); if it has not ended by then, the watcher removes what is still being
written, stops the process's children and ends the process with the signal's exit status.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time

GRACE = 1.0                      # seconds the main thread gets to unwind before the process is ended for it
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}   # 128 + the signal's number, as shells report it
_received: list[int] = []
_installed = False


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM; `status` is the exit status the command ends with."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.status = EXIT_STATUS.get(signum, 128 + signum)


def install() -> None:
    """Route SIGINT and SIGTERM through `Interrupted` and the watcher. Only from the main thread of the real
    process (the console script), once."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for signum in EXIT_STATUS:
        signal.signal(signum, _handle)
    # the thread holds `writer` too: the wakeup fd must stay open as long as the handlers are installed
    threading.Thread(target=_watch, args=(reader, writer), name="roots-edge-signals", daemon=True).start()
    _installed = True


def _handle(signum, frame):
    if _received:                # a second signal while unwinding: stop now
        _hard_stop(signum)
    _received.append(signum)
    raise Interrupted(signum)


def _watch(reader: socket.socket, writer: socket.socket) -> None:
    while True:
        data = reader.recv(64)
        signums = [b for b in data if b in EXIT_STATUS]
        if signums:
            break
    time.sleep(GRACE)            # the main thread normally ends the process well before this
    _hard_stop(signums[0])


def _hard_stop(signum: int) -> None:
    from roots_edge.core.paths import remove_in_progress

    try:
        remove_in_progress()
        stop_children()
        sys.stderr.write(f"\ninterrupted ({signal.Signals(signum).name}): stopped; nothing partial was left\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_STATUS.get(signum, 128 + signum))


def children() -> list[int]:
    """This process's child processes (Linux /proc; elsewhere none are found)."""
    me, found = os.getpid(), []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()   # after "(comm)": state, ppid, ...
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(name))
    return found


def stop_children() -> None:
    for pid in children():
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
