"""An exclusive writer lock on a folder (a run directory, a pair folder).

One writer at a time: the writer holds ``fcntl.flock`` on ``FOLDER/.lock`` and
writes its pid, host and start time into it; a second writer gets a one-line
error naming the holder. The kernel drops the lock when its holder exits, even
on ``kill -9``, so a lock left by a dead process is simply taken over (with a
note naming it). Readers (``sample``, ``eval``, ``plot``) never take the lock:
every file they read is written to a temporary name and renamed into place.
Where ``fcntl`` does not exist (Windows) folders are not locked.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from .errors import StraightflowError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_NAME = ".lock"


class FolderLock:
    """``with FolderLock(folder, "run directory"):`` holds the folder's writer lock."""

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> "FolderLock":
        if fcntl is None or self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(fd) or "another process"
            os.close(fd)
            raise StraightflowError(f"{self.what} {self.folder} is being written by {holder}; wait for it to finish or "
                                    "choose another --out") from None
        stale = _read(fd)
        if stale:  # released locks are emptied: text left behind means its holder died
            print(f"straightflow: note: taking over the lock of {stale}, which is no longer running", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd,
                  f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""
