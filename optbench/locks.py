"""One writer per directory: an exclusive lock on ``DIR/.lock`` (run and training directories).

The lock is an advisory ``flock`` on the file ``DIR/.lock``, taken before anything else is
written into ``DIR`` and held until the writer is done. The kernel releases it when the
process ends for any reason (also ``kill -9``), so a lock can never be left "held" by a dead
process: a ``.lock`` file that still exists but is not locked is the trace of a writer that
was killed, and the next writer simply takes it over (and says so).

While it holds the lock, a writer records itself in the file (pid, host, start time,
command) so that a refused second writer can name the holder. On release the file is
removed (before it is unlocked); a writer that acquires the lock checks that the file it
locked is still the one at ``DIR/.lock`` and retries otherwise, so an unlink racing an
acquisition never leaves two holders. A directory the lock had to create is removed again
on release if nothing else was written into it.

Platforms without ``fcntl`` (Windows) get no locking.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

LOCK_NAME = ".lock"


class LockError(ValueError):
    """A directory that another live process is writing to (or that cannot hold a lock)."""


def _holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}


def describe_holder(record: dict[str, Any] | None) -> str:
    """``pid 123 on host h, started 2026-11-21T10:00:00+0000`` (or a placeholder)."""
    if not record:
        return "another process (which has not yet recorded itself)"
    return f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}"


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        record = json.loads(data.decode()) if data.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class DirectoryLock:
    """The exclusive writer's lock of ``directory`` (created if missing).

    ``what`` names the directory in messages ("run directory", "training directory");
    ``echo`` (if given) is told when a stale lock left by a killed writer is taken over.
    Use as a context manager, or call :meth:`acquire` / :meth:`release` (both idempotent).
    """

    def __init__(self, directory: str | Path, what: str = "directory", echo: Callable[[str], Any] | None = None):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.what = what
        self.echo = echo
        self._fd: int | None = None
        self._created = False
        self.previous: dict[str, Any] | None = None  # the record of a killed writer whose lock was taken over

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DirectoryLock":
        """Take the lock; :class:`LockError` (naming the holder) if another process has it."""
        if self._fd is not None:
            return self
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            return self
        try:
            self.directory.mkdir(parents=True)
            self._created = True
        except FileExistsError:  # there already, or made this instant by a racing writer
            if not self.directory.is_dir():
                raise LockError(f"{self.directory} exists and is not a directory; choose another --out") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the directory was removed by a writer releasing it just now
                self.directory.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _read_record(fd)
                for _ in range(20):  # the holder may be between locking and recording itself
                    if record:
                        break
                    time.sleep(0.01)
                    record = _read_record(fd)
                os.close(fd)
                raise LockError(f"{self.directory} is being written by {describe_holder(record)}; wait for it to "
                                f"finish or choose another --out") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # released (and removed) by its holder just now
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self.previous = _read_record(fd)
        if self.previous and self.echo is not None:
            self.echo(f"note: taking over the lock of {self.directory} left by {describe_holder(self.previous)}, "
                      "which ended without releasing it")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(_holder_record()).encode())
        return self

    def release(self) -> None:
        """Remove the lock file and unlock; remove the directory too if the lock created it
        and it is otherwise empty."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
        if self._created:
            try:
                self.directory.rmdir()  # only if empty
            except OSError:
                pass
            self._created = False

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:  # an abandoned lock object releases its lock like a finished writer
        if getattr(self, "_fd", None) is not None:
            try:
                self.release()
            except OSError:
                pass


__all__ = ["LOCK_NAME", "DirectoryLock", "LockError", "describe_holder"]
