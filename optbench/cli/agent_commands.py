"""``optbench train | evaluate | export``: the agent trainer's commands (filled in by the trainer)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the trainer's sub-commands."""
