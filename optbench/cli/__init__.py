"""The ``optbench`` command line. Each sub-command lives in its own module and registers
itself through ``add_parser(subparsers)``; :func:`main` turns every expected failure
(bad input, missing files, NaN from an optimizer, a directory another process is writing,
a file that cannot be written: read-only, full disk) into a one-line error and exit code 2.
Bad command-line syntax is reported in one line too (exit code 2)."""

from __future__ import annotations

import argparse
import errno
import sys

from rich.console import Console

from optbench.spec_syntax import OptimizerError  # no torch: `optbench --help` stays fast

console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


def set_threads(threads: int | None) -> None:
    """``--threads``: torch CPU threads of this process (``None``: torch's default)."""
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: optbench run: argument ...``)
    rather than the usage text followed by the message; its sub-parsers are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def os_error_message(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and why."""
    what = exc.strerror or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        line = str(exc).splitlines()[0] if str(exc) else what
    else:
        line = f"{what}: {' -> '.join(paths)}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        line += "; free some space and re-run the same command (finished work is kept and resumed)"
    return line


def build_parser() -> argparse.ArgumentParser:
    from optbench.cli import (agent_commands, analysis_commands, interop_commands, meta_commands, run_commands,
                              study_commands)

    parser = OneLineParser(prog="optbench", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (run_commands, agent_commands, meta_commands, analysis_commands, study_commands, interop_commands):
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.markup import escape

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for records
    try:
        from optbench import backends

        backends.enable()  # the CPU back-ends this machine runs faster with (recorded in run.json)
        return int(args.func(args) or 0)
    except (UserError, OptimizerError, FileNotFoundError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except OSError as exc:  # writing results, checkpoints, reports: read-only, full disk, ...; earlier work is kept
        err_console.print(f"[bold red]error:[/] {escape(os_error_message(exc))}",
                          highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]; finished work is saved, re-run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
