"""Where straightflow caches what it computes once (e.g. feature networks)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$STRAIGHTFLOW_CACHE`` or ``~/.cache/straightflow``."""
    return Path(os.environ.get("STRAIGHTFLOW_CACHE") or Path.home() / ".cache" / "straightflow").expanduser()
