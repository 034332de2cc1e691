"""Replay buffer: a fixed-capacity ring of transitions in numpy arrays (always in host memory;
sampled batches are moved to the agent's device, see :meth:`ReplayBuffer.sample`).

``done`` stores *termination* only (never truncation), so targets bootstrap through time
limits: ``y = r + γ (1 − terminated) V(s')``.
"""

from __future__ import annotations

import numpy as np
import torch

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    def __init__(self, state_dim: int, action_dim: int, capacity: int = 1_000_000):
        self.capacity = int(capacity)
        self.state_dim, self.action_dim = state_dim, action_dim
        self.obs = np.zeros((self.capacity, state_dim), np.float32)
        self.next_obs = np.zeros((self.capacity, state_dim), np.float32)
        self.action = np.zeros((self.capacity, action_dim), np.float32)
        self.reward = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)
        self.ptr = 0  # next write position
        self.size = 0
        self.total = 0  # transitions ever added

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        i = self.ptr
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total += 1

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None
               ) -> tuple[torch.Tensor, ...]:
        """``(obs, action, reward, next_obs, terminated)`` as float32 tensors (uniform, with replacement).

        On ``device`` (default: the CPU, where the buffer lives); the same rows whatever the
        device (one draw from ``rng``). For another device the batch is gathered into one
        host buffer (pinned for CUDA) and moved in a single transfer, see :meth:`gather_packed`.
        """
        idx = rng.integers(0, self.size, size=batch_size)
        if device is not None and torch.device(device).type != "cpu":
            return self.gather_packed(idx, device)
        return (torch.from_numpy(self.obs[idx]), torch.from_numpy(self.action[idx]),
                torch.from_numpy(self.reward[idx]), torch.from_numpy(self.next_obs[idx]),
                torch.from_numpy(self.terminated[idx]))

    def gather_packed(self, idx: np.ndarray, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Rows ``idx`` of every field, gathered into one contiguous float32 host buffer (pinned
        memory when ``device`` is CUDA, so the copy is asynchronous), moved to ``device`` in one
        transfer and split there into contiguous ``(obs, action, reward, next_obs, terminated)``."""
        device = torch.device(device)
        B = len(idx)
        shapes = [(B, *getattr(self, k).shape[1:]) for k in FIELDS]
        sizes = [int(np.prod(s)) for s in shapes]
        pinned = device.type == "cuda"
        host = torch.empty(sum(sizes), dtype=torch.float32, pin_memory=pinned)
        buf, off = host.numpy(), 0
        for k, shape, n in zip(FIELDS, shapes, sizes):
            np.take(getattr(self, k), idx, axis=0, out=buf[off:off + n].reshape(shape), mode="clip")
            off += n
        # a pinned block is reused by torch's host allocator only after this copy has finished
        flat = host.to(device, non_blocking=pinned)
        return tuple(part.view(shape) for part, shape in zip(flat.split(sizes), shapes))

    # ------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The stored rows in insertion order of the array (first ``size`` rows), as tensors."""
        n = self.size
        return {f"replay/{k}": torch.from_numpy(np.ascontiguousarray(getattr(self, k)[:n])) for k in FIELDS}

    def state_meta(self) -> dict:
        return {"ptr": self.ptr, "size": self.size, "total": self.total, "capacity": self.capacity}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        n = int(meta["size"])
        if n > self.capacity:
            raise ValueError(f"replay buffer in checkpoint holds {n} rows, more than capacity {self.capacity}")
        for k in FIELDS:
            arr = tensors[f"replay/{k}"].numpy()
            if arr.shape[0] != n or arr.shape[1:] != getattr(self, k).shape[1:]:
                raise ValueError(f"replay/{k} has shape {list(arr.shape)}, expected {[n, *getattr(self, k).shape[1:]]}")
            getattr(self, k)[:n] = arr
        self.size, self.ptr, self.total = n, int(meta["ptr"]) % self.capacity, int(meta["total"])
