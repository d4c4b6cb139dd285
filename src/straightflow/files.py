"""File helpers shared by checkpoints, pair folders and exports: content checksums, atomic writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import StraightflowError


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes, on_failure: str = "") -> None:
    """Write ``data`` to a temporary name, fsync, then rename into place: ``path`` holds its old
    bytes or the new ones, never a part. A failed write (e.g. a full disk) is a one-line error
    ending with ``on_failure`` (what the user keeps / should do), and leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StraightflowError(f"could not write {path}: {exc.strerror or exc} (is the disk full?)"
                                + (f"; {on_failure}" if on_failure else "")) from None
