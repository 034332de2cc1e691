"""Atomic file writes shared by every writer of optbench (cells, checkpoints, packages, logs).

A file written here holds either its old or its complete new content, whatever happens
during the write (full disk, ``kill -9``, Ctrl-C): the data goes to a temporary file in the
same directory (``.NAME.XXXXXXXX.tmp``), is fsync'ed, and is renamed over ``NAME``; the
directory is fsync'ed after the rename. A write that fails removes its temporary file; one
killed mid-write leaves it behind, and the next writer of the directory removes it
(:func:`remove_stale_temporaries`, called while holding the directory's lock).

Errors are :class:`OSError` carrying the path being written (``No space left on device:
OUT/checkpoint.safetensors``), so the command line reports them in one line. safetensors'
own writer raises a ``SafetensorError`` without a path on a full disk, so tensors are
serialized in memory and written through the same path as text.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _with_path(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` if it names no file (a failed ``write()`` does not)."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno or errno.EIO), str(path))


def write_temporary(path: str | Path, data: bytes | bytearray | memoryview, mode: int | None = None) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` (fsync'ed, ``mode`` applied)
    and return its name; the caller renames it into place (or removes it). A failed write
    removes it and raises an :class:`OSError` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
        except OSError as exc:
            raise _with_path(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes_atomic(path: str | Path, data: bytes | bytearray | memoryview, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring); ``mode``: the file's
    permission bits (default: those of ``tempfile.mkstemp``, 0600)."""
    path = Path(path)
    tmp = write_temporary(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def save_safetensors_atomic(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None,
                            mode: int | None = None) -> None:
    """Write torch ``tensors`` as a safetensors file atomically, with ``metadata`` in its header."""
    from safetensors.torch import save

    write_bytes_atomic(path, save(tensors, metadata=metadata), mode)


def is_temporary(name: str) -> bool:
    """Whether a file name is that of a temporary file of :func:`write_bytes_atomic`."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left in ``directory`` (not
    recursive); the caller holds the directory's lock, so no live writer owns them."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):  # nothing written there yet (or not a directory: said later)
        return removed
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and is_temporary(entry.name):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


__all__ = ["fsync_directory", "write_temporary", "write_bytes_atomic", "write_text_atomic", "save_safetensors_atomic",
           "is_temporary", "remove_stale_temporaries"]
