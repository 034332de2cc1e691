"""Write MANIFEST.md and manifest.json of the mujoco-states suite from its packages.

Every figure comes from the packages' own package.json (written by `optbench export` from
the training checkpoint) and from the files' checksums; nothing is typed in.
Run: python suites/mujoco-states/make_manifest.py
"""

from __future__ import annotations

import json
from pathlib import Path

from optbench.agents.package import load_package, sha256_file

HERE = Path(__file__).resolve().parent

# Published SAC returns at fixed environment steps, for the "in the published range" check.
# Source: Tianshou's MuJoCo SAC benchmark, per-seed learning curves in thu-ml/tianshou
# examples/mujoco/benchmark/<Task>-v3/sac/test_rew_10seeds.csv (gym 0.17 / mujoco-py, v3 tasks,
# 10 seeds; mean over seeds of each seed's 10-episode test return ± std over seeds; fixed
# α = 0.2, learning rate 1e-3, 10k random steps — not our settings, and v3 not v5).
PUBLISHED_SOURCE = ("Tianshou MuJoCo SAC benchmark (thu-ml/tianshou, examples/mujoco/benchmark/<Task>-v3/sac/"
                    "test_rew_10seeds.csv; gym v3 tasks, 10 seeds, mean ± std over seeds)")
PUBLISHED_SAC = {  # task -> {steps: (mean, std)}
    "Hopper": {100_000: (2613.5, 990.8), 200_000: (3234.4, 314.2), 300_000: (3387.7, 114.6)},
    "HalfCheetah": {100_000: (6514.6, 514.2), 200_000: (8207.6, 928.3), 300_000: (9059.3, 1051.4)},
    "Walker2d": {100_000: (1305.2, 795.1), 200_000: (2530.5, 1300.1), 300_000: (3386.8, 1182.0)},
    "Ant": {100_000: (1019.8, 449.9), 200_000: (2132.6, 977.2), 300_000: (3560.7, 779.5)},
}


def published(task: str, steps: int) -> dict | None:
    """The published SAC return at the step count nearest to ``steps`` (and whether ours is
    within two seed standard deviations of it)."""
    table = PUBLISHED_SAC.get(task.split("-")[0])
    if not table:
        return None
    at = min(table, key=lambda k: abs(k - steps))
    mean, std = table[at]
    return {"steps": at, "mean": mean, "std": std, "source": PUBLISHED_SOURCE}


def run_name(cfg: dict) -> str:
    """The training run's directory under ~/optbench-runs (the campaign's naming)."""
    k = f"-k{cfg['iterations']}" if cfg["policy"] == "iterative" and cfg["iterations"] != 5 else ""
    return f"{cfg['task']}-{cfg['policy']}{k}-s{cfg['seed']}"


def plot_learning_curves(agents: list[dict]) -> list[Path]:
    """``learning_curves_<task>.png``: every agent's training evaluations, one line per seed,
    one colour per policy (and iteration count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for task in sorted({a["task"] for a in agents}):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        configs = sorted({a["config_label"] for a in agents if a["task"] == task})
        for i, label in enumerate(configs):
            for a in (a for a in agents if a["task"] == task and a["config_label"] == label):
                steps, returns = zip(*a["training_evals"]) if a["training_evals"] else ((), ())
                ax.plot([s / 1000 for s in steps], returns, color=f"C{i}", alpha=0.8, lw=1.2,
                        label=label if a["seed"] == min(b["seed"] for b in agents
                                                        if b["task"] == task and b["config_label"] == label) else None)
        ax.set(xlabel="environment steps (thousands)", ylabel="evaluation return", title=task)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = HERE / f"learning_curves_{task.split('-')[0].lower()}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def build_manifest() -> dict:
    """The manifest of the packages as they are on disk (every checksum verified on load)."""
    agents = []
    for pkg_dir in sorted((HERE / "packages").iterdir()):
        pkg = load_package(pkg_dir)  # verifies every checksum
        meta = pkg.meta
        train = meta["training"]
        cfg = train["config"]
        states = meta["states"]
        run = run_name(cfg)
        export = (f"optbench export ~/optbench-runs/{run} --states "
                  f"{states['benchmark']} --heldout {states['heldout']} --episodes {meta['eval']['episodes']} "
                  f"--out suites/mujoco-states/packages/{pkg_dir.name}")
        iterations = f" --iterations {cfg['iterations']}" if cfg["policy"] == "iterative" and cfg["iterations"] != 5 else ""
        command = (f"optbench train --task {cfg['task']} --policy {cfg['policy']}{iterations} --steps {cfg['steps']} "
                   f"--seed {cfg['seed']} --eval-episodes {cfg['eval_episodes']} --threads 1 --out ~/optbench-runs/{run}")
        agents.append({
            "package": pkg_dir.name, "task": meta["task"], "policy": meta["policy"], "seed": train["seed"],
            "config_label": meta["policy"] + (f" K={cfg['iterations']}" if meta["policy"] == "iterative" else ""),
            "command": command, "export_command": export, "steps_trained": train["steps"], "steps_planned": cfg["steps"],
            "wall_clock_s": round(train["wall_time_s"], 1), "eval_return_mean": round(meta["eval"]["mean"], 1),
            "eval_return_std": round(meta["eval"]["std"], 1), "eval_episodes": meta["eval"]["episodes"],
            "training_evals": [[e["step"], round(e["mean"])] for e in train.get("eval_history", [])],
            "alpha": meta["alpha"], "states": {"benchmark": states["benchmark"], "heldout": states["heldout"]},
            "published_sac": published(meta["task"], train["steps"]),  # SAC's, beside direct and iterative agents
            "versions": meta.get("versions", {}),
            "files": {p.name: sha256_file(p) for p in sorted(pkg_dir.iterdir())},
        })
    return {"agents": agents}


def main() -> None:
    manifest = build_manifest()
    agents = manifest["agents"]
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lines = ["# mujoco-states: agents", "",
             "Generated by `make_manifest.py` from each package's `package.json`; checksums are verified on load.", "",
             "| package | task | policy | seed | steps (planned) | wall clock | eval return (10 ep.) "
             "| published SAC (steps) | ours within 2 sd? | training evals, last 4 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for a in agents:
        pub = a["published_sac"]
        within = "" if pub is None else ("yes" if abs(a["eval_return_mean"] - pub["mean"]) <= 2 * pub["std"] else
                                         ("above" if a["eval_return_mean"] > pub["mean"] else "below"))
        pub_text = "" if pub is None else f"{pub['mean']:.0f} ± {pub['std']:.0f} ({pub['steps'] // 1000}k)"
        lines.append(f"| {a['package']} | {a['task']} | {a['policy']} | {a['seed']} | {a['steps_trained']} "
                     f"({a['steps_planned']}) | {a['wall_clock_s'] / 60:.0f} min | "
                     f"{a['eval_return_mean']:.0f} ± {a['eval_return_std']:.0f} | {pub_text} | {within} | "
                     + ", ".join(f"{s // 1000}k: {r}" for s, r in a["training_evals"][-4:]) + " |")
    lines += ["", f"Published SAC returns: {PUBLISHED_SOURCE}. Their settings differ from ours (fixed α = 0.2, "
              "learning rate 10⁻³, 10k random steps, gym v3 tasks vs our v5; we follow seed 000: auto-tuned α, "
              "3·10⁻⁴, pessimistic ensemble β = 2.5 for targets), so the comparison is a sanity range, not a match.",
              "", "Commands (re-running a training command resumes it from its last checkpoint):", ""]
    for a in agents:
        lines += [f"- {a['package']}: `{a['command']}` then `{a['export_command']}`"]
    lines += ["", "Package versions at export: " + ", ".join(f"{k} {v}" for k, v in sorted(agents[0]["versions"].items()))
              if agents else ""]
    plots = plot_learning_curves(agents)
    lines += ["", "Learning curves (training evaluations, every seed): "
              + ", ".join(f"[{p.name}]({p.name})" for p in plots)]
    (HERE / "MANIFEST.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
