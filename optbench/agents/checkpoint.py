"""Checkpoint files that load without executing code.

A checkpoint is one safetensors file: every tensor (networks, Adam moments, RNG state,
replay buffer; always CPU tensors, so a checkpoint loads on any device) plus a JSON document
in the safetensors header (``__metadata__["optbench"]``) holding configuration, counters,
numpy/env RNG states and optimizer hyperparameters. The
JSON carries a sha256 digest of all tensor bytes, verified on load, so a truncated or
modified file is refused. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "optbench-checkpoint"
VERSION = 1
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


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` (stored as CPU tensors, whatever their device) and ``meta``
    (JSON-able) to ``path``."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() if v.requires_grad else v.detach().cpu().contiguous()
               for k, v in tensors.items()}
    meta = dict(meta, format=FORMAT, format_version=VERSION, digest=tensor_digest(tensors))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"optbench": json.dumps(meta)})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    if meta.get("format_version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {meta.get('format_version')}, expected {VERSION}")
    if with_tensors and tensor_digest(tensors) != meta.get("digest"):
        raise CheckpointError(f"{p} is corrupt (tensor checksum mismatch)")
    if task is not None and meta.get("task") != task:
        raise CheckpointError(f"{p} is a checkpoint for task {meta.get('task')!r}, not {task!r}")
    return tensors, meta


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
