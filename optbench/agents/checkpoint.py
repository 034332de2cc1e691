"""Checkpoint files that load without executing code.

A checkpoint is one safetensors file: every tensor (networks, Adam moments, RNG state,
replay buffer; always CPU tensors, so a checkpoint loads on any device) plus a JSON document
in the safetensors header (``__metadata__["optbench"]``) holding configuration, counters,
numpy/env RNG states and optimizer hyperparameters. The
JSON carries a sha256 digest of all tensor bytes (``digest``) and, since format version 2, a
sha256 of the JSON document itself (``meta_digest``, over its canonical form without that
field; it covers ``digest`` and so the tensors too). Both are verified on load, so a
truncated file, modified tensors or edited metadata (say, the task name) are refused.
Version-1 files (``digest`` only, written before metadata was covered) still load, their
tensors verified; a run resumed from one writes version 2 from its next checkpoint on.
Writes are atomic (:mod:`optbench.fileio`: temporary file, fsync, ``os.replace``; a failed
write leaves the previous file and no temporary file). Training checkpoints keep the file they
replace as ``checkpoint.prev.safetensors`` (``save_checkpoint(..., keep_previous=True)``), and
resuming (:func:`load_latest_checkpoint`) falls back to it, with a warning, when the latest
file is corrupt: the agent trainer and the optimizer meta-trainer share this rotation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from optbench.fileio import TEMP_SUFFIX, fsync_directory, save_safetensors_atomic, write_temporary

FORMAT = "optbench-checkpoint"
VERSION = 2  # written; 1: no metadata checksum (still read)
READABLE_VERSIONS = (1, 2)
CHECKPOINT_NAME = "checkpoint.safetensors"


class CheckpointError(ValueError):
    """A missing, corrupt, truncated or mismatched checkpoint."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def metadata_digest(meta: dict) -> str:
    """sha256 of a checkpoint's JSON document in canonical form, without ``meta_digest``."""
    body = {k: v for k, v in meta.items() if k != "meta_digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` (``keep_previous``) keeps the checkpoint it replaced:
    ``checkpoint.safetensors`` -> ``checkpoint.prev.safetensors``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def corrupt_path(path: str | Path) -> Path:
    """Where a corrupt latest checkpoint is moved when a run falls back to the previous one
    (kept for inspection; ``checkpoint.corrupt.safetensors``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.corrupt{path.suffix}")


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict, *,
                    keep_previous: bool = False) -> None:
    """Atomically write ``tensors`` (stored as CPU tensors, whatever their device) and ``meta``
    (JSON-able) to ``path``; a failed write (full disk, ...) leaves the previous file and no
    temporary file.

    ``keep_previous``: the file being replaced becomes :func:`previous_path` (the one before it
    is dropped), so that a latest checkpoint found corrupt later (bit rot, a bad copy) leaves
    one to fall back to (:func:`load_latest_checkpoint`). The rotation never leaves a moment
    without a complete latest file: the new file is complete on disk before the old one is
    hard-linked to the previous name and the new one renamed over it."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() if v.requires_grad else v.detach().cpu().contiguous()
               for k, v in tensors.items()}
    meta = json.loads(json.dumps(dict(meta, format=FORMAT, format_version=VERSION, digest=tensor_digest(tensors))))
    meta["meta_digest"] = metadata_digest(meta)
    if not keep_previous or not path.exists():
        save_safetensors_atomic(path, tensors, {"optbench": json.dumps(meta)}, mode=0o644)
        return
    from safetensors.torch import save

    tmp = write_temporary(path, save(tensors, metadata={"optbench": json.dumps(meta)}), mode=0o644)
    prev, link = previous_path(path), None
    try:
        fd, link = tempfile.mkstemp(dir=path.parent, prefix=f".{prev.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(link)
        try:
            os.link(path, link)  # the current latest under a second name: no data copied
        except OSError:  # a file system without hard links
            shutil.copyfile(path, link)
        os.replace(link, prev)
        link = None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if link is not None:
            Path(link).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a training output directory holding one."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    return p


def load_checkpoint(path: str | Path, *, task: str | None = None, with_tensors: bool = True
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint; ``task`` (if given) must match. Never unpickles."""
    p = resolve_checkpoint(path)
    try:
        with safe_open(str(p), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if with_tensors else {}
    except Exception as exc:  # SafetensorError, OSError, ...: corrupt / truncated / not safetensors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p} is not a readable optbench checkpoint ({first})") from None
    try:
        meta = json.loads(header["optbench"])
        assert meta.get("format") == FORMAT
    except Exception:
        raise CheckpointError(f"{p} is not an optbench checkpoint (missing or bad metadata)") from None
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{p} has checkpoint format version {meta.get('format_version')}, expected one of "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    if meta["format_version"] >= 2 and meta.get("meta_digest") != metadata_digest(meta):
        raise CheckpointError(f"{p} is corrupt or was edited (metadata checksum mismatch)")
    if with_tensors and tensor_digest(tensors) != meta.get("digest"):
        raise CheckpointError(f"{p} is corrupt (tensor checksum mismatch)")
    if task is not None and meta.get("task") != task:
        raise CheckpointError(f"{p} is a checkpoint for task {meta.get('task')!r}, not {task!r}")
    return tensors, meta


def load_latest_checkpoint(path: str | Path, *, warn: Callable[[str], object] | None = None
                           ) -> tuple[dict[str, torch.Tensor], dict, Path] | None:
    """The checkpoint to resume from at ``path`` (written with ``keep_previous``): the latest
    one, or, when it is missing or fails verification (truncated, bit-flipped, edited), the
    previous one (:func:`previous_path`), said through ``warn`` (default: stderr). A corrupt
    latest file is moved to :func:`corrupt_path`, so that the next rotation keeps the good
    previous one. Returns ``(tensors, meta, file used)``, or ``None`` when neither file exists
    (nothing to resume from). Never a silent fresh start: when no usable checkpoint is left
    of files that exist, :class:`CheckpointError` says so."""
    path = Path(path)
    prev = previous_path(path)
    latest_error: CheckpointError | None = None
    if path.exists():
        try:
            tensors, meta = load_checkpoint(path)
            return tensors, meta, path
        except CheckpointError as exc:
            latest_error = exc
    if not prev.exists():
        if latest_error is not None:
            raise CheckpointError(f"{latest_error}; there is no previous checkpoint ({prev.name}) to fall back to: "
                                  f"remove {path} to start again from step 0") from None
        return None
    try:
        tensors, meta = load_checkpoint(prev)
    except CheckpointError as exc:
        first = latest_error if latest_error is not None else f"{path} is missing"
        raise CheckpointError(f"{first}, and so is the previous checkpoint: {exc}") from None
    why = f"{path} is missing"
    if latest_error is not None:
        os.replace(path, corrupt_path(path))
        why = f"{latest_error} (moved to {corrupt_path(path).name})"
    (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(
        f"warning: {why}; falling back to the previous checkpoint {prev.name} (step {meta.get('step')})")
    return tensors, meta, prev


def optimizer_to_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state_dict into tensors and JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            tensors[f"optim/{name}/{idx}/{key}"] = val if torch.is_tensor(val) else torch.tensor(val)
    groups = json.loads(json.dumps(sd["param_groups"], default=lambda o: None))
    return tensors, {"param_groups": groups}


def optimizer_from_tensors(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    prefix = f"optim/{name}/"
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(prefix):
            idx, key = k[len(prefix):].split("/", 1)
            state.setdefault(int(idx), {})[key] = v.clone()
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
