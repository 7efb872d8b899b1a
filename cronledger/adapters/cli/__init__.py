"""The `cronledger` command line (see main.py)."""

from cronledger.adapters.cli.main import main

__all__ = ["main"]
