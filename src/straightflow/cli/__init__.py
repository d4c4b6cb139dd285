from .main import COMMANDS, main

__all__ = ["main", "COMMANDS"]
