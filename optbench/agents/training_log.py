"""Training log: ``log.csv`` (periodic stats), ``episodes.csv`` (every episode), ``evals.csv``,
and a learning-curve plot ``learning_curve.png``. On resume, rows past the resumed step
(written after the last checkpoint by a run that was killed) are dropped.

Rows are appended as training goes; a process killed (or out of disk space) in the middle of
an append leaves an incomplete last line, which reading ignores and the next
:class:`TrainingLog` (on resume) removes. That rewrite is atomic, so no row up to the resumed
step is ever lost; :meth:`TrainingLog.sync` puts the rows on disk before a checkpoint that
names their step is written."""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

from optbench.fileio import write_bytes_atomic, write_text_atomic

LOG_FIELDS = ["step", "updates", "episodes", "wall_time", "steps_per_s", "updates_per_s", "last_return",
              "q_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "model_loss", "distill_loss"]
EPISODE_FIELDS = ["step", "episode", "return", "length"]
EVAL_FIELDS = ["step", "mean", "std", "episodes"]


class TrainingProgress:
    """Rich progress bar on a terminal; one plain line per log interval otherwise (shared by
    agent training and optimizer meta-training)."""

    def __init__(self, label: str, total: int, start: int, enabled: bool, advance_every: int):
        self.total, self.enabled, self.advance_every = total, enabled, advance_every
        self.progress = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(label), BarColumn(bar_width=20), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def advance(self, step: int) -> None:
        if self.progress is not None and step % self.advance_every == 0:
            self.progress.update(self.task, completed=step)

    def show(self, step: int, info: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)
        elif self.enabled:
            print(f"step {step}/{self.total} | {info}", flush=True)

    def note(self, step: int, text: str) -> None:
        """Say what a long pause of the bar is (an evaluation): in the bar, or as one line."""
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=text)
        elif self.enabled:
            print(f"step {step}/{self.total} | {text}", flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class CsvFile:
    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields

    def truncate_after(self, step: int) -> None:
        """Keep only the complete rows with ``step <= step`` (or create the file with its
        header), rewriting the file atomically."""
        rows = [r for r in self.read() if _num(r.get("step")) is not None and _num(r["step"]) <= step]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.path, buf.getvalue(), mode=0o644)

    def append(self, row: dict) -> None:
        buf = io.StringIO(newline="")
        csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore").writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        with open(self.path, "a", newline="") as fh:
            fh.write(buf.getvalue())  # one write of the whole line

    def read(self) -> list[dict]:
        """The complete rows: an incomplete last line (an append that was cut short) and rows
        without exactly one value per field are left out."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        if text and not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
        rows = csv.DictReader(io.StringIO(text, newline=""))
        return [r for r in rows if None not in r and None not in r.values()]

    def sync(self) -> None:
        """fsync the file (if it exists)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


class TrainingLog:
    def __init__(self, out_dir: Path, resume_step: int = 0):
        self.out_dir = Path(out_dir)
        self.log = CsvFile(self.out_dir / "log.csv", LOG_FIELDS)
        self.episodes = CsvFile(self.out_dir / "episodes.csv", EPISODE_FIELDS)
        self.evals = CsvFile(self.out_dir / "evals.csv", EVAL_FIELDS)
        for f in (self.log, self.episodes, self.evals):
            f.truncate_after(resume_step)

    def sync(self) -> None:
        """Put every appended row on disk (before a checkpoint is written)."""
        for f in (self.log, self.episodes, self.evals):
            f.sync()

    @staticmethod
    def peek(out_dir: Path) -> list[dict]:
        """The rows already in a directory's ``log.csv`` and ``episodes.csv`` (left as they are)."""
        out_dir = Path(out_dir)
        return CsvFile(out_dir / "log.csv", LOG_FIELDS).read() + CsvFile(out_dir / "episodes.csv", EPISODE_FIELDS).read()

    def plot(self, title: str = "") -> Path | None:
        """Write ``learning_curve.png`` (training episode returns and evaluation mean ± std)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except Exception:  # plotting is best effort
            return None
        eps = self.episodes.read()
        evs = self.evals.read()
        fig, ax = plt.subplots(figsize=(7, 4))
        if eps:
            ax.plot([_num(r["step"]) for r in eps], [_num(r["return"]) for r in eps], ".", ms=2, alpha=0.4,
                    label="training episodes")
        if evs:
            x = [_num(r["step"]) for r in evs]
            m = [_num(r["mean"]) for r in evs]
            s = [_num(r["std"]) for r in evs]
            ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label="evaluation (deterministic)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("return")
        ax.set_title(title)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.out_dir / "learning_curve.png"
        buf = io.BytesIO()
        fig.savefig(buf, dpi=100, format="png")
        plt.close(fig)
        write_bytes_atomic(path, buf.getvalue(), mode=0o644)
        return path
