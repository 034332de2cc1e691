"""Settings recorded from the constructor's signature, one ``label()``, and labels that stay put."""

from __future__ import annotations

from pathlib import Path

import pytest

from optbench.optimizers import OptimizerError, make_optimizer, parse_spec
from optbench.optimizers.base import PolicyOptimizer, register

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "suites/mujoco-states/packages"

# Labels of optimizers as stored before settings were recorded from the signature (stored results and
# tuning.json refer to them): they must not change.
STORED_LABELS = {
    "adam": "adam(lr=0.01,samples=10)",
    "adam(samples=10,lr=0.03)": "adam(lr=0.03,samples=10)",
    "cem": "cem(elites=10,min_std=0.001,population=100,smoothing=1.0)",
    "cem(population=100,elites=5,smoothing=0.3)": "cem(elites=5,min_std=0.001,population=100,smoothing=0.3)",
    "cmaes": "cmaes(popsize=None,samples=10,sigma0=0.5)",
    "pycma": "pycma(samples=10,sigma0=0.5)",
    "pycma(popsize=6,options={'tolfun':1e-9})": "pycma(options={'tolfun': 1e-09},popsize=6,samples=10,sigma0=0.5)",
    "pycma(nonfinite='worst')": "pycma(nonfinite='worst',samples=10,sigma0=0.5)",
    "nevergrad:OnePlusOne": "nevergrad:OnePlusOne(batch=10,estimate='recommend',samples=10)",
    "nevergrad:NGOpt(batch=4,nonfinite='worst')": "nevergrad:NGOpt(batch=4,estimate='recommend',nonfinite='worst',samples=10)",
    "scipy:L-BFGS-B": "scipy:L-BFGS-B(samples=10)",
    "scipy:Nelder-Mead": "scipy:Nelder-Mead(samples=10,step=0.5)",
    "scipy:l-bfgs-b(maxcor=5)": "scipy:L-BFGS-B(maxcor=5,samples=10)",
}


@pytest.mark.parametrize("spec", sorted(STORED_LABELS))
def test_labels_of_existing_optimizers_do_not_change(spec):
    assert make_optimizer(spec).label() == STORED_LABELS[spec]


def test_amortized_labels_do_not_change():
    it = make_optimizer("iterative", package=str(PACKAGES / "hopper-iterative"))
    assert it.label() == ("iterative(agent='Hopper-v5-iterative-s0',iterations_trained=5,package='"
                          f"{PACKAGES / 'hopper-iterative'}',samples=2,start='network',trained_by='SAC',"
                          "trained_on=['Hopper-v5-iterative-s0'])")
    d = make_optimizer("direct", package=str(PACKAGES / "hopper-direct"))
    assert d.label() == (f"direct(agent='Hopper-v5-direct-s0',package='{PACKAGES / 'hopper-direct'}',"
                         "trained_by='SAC',trained_on=['Hopper-v5-direct-s0'])")
    assert "network" not in d.settings() and "network" not in it.settings()


def test_adam_betas_are_recorded_and_labelled():
    adam = make_optimizer("adam(betas=(0.5,0.9))")
    assert adam.betas == (0.5, 0.9)
    assert adam.label() == "adam(betas=(0.5, 0.9),lr=0.01,samples=10)"
    assert adam.settings() == {"lr": 0.01, "samples": 10, "betas": (0.5, 0.9)}
    assert adam.defaults == {"lr": 0.01, "samples": 10, "betas": (0.9, 0.999)}
    # the label is a spec that builds the same optimizer
    again = make_optimizer(adam.label())
    assert again.label() == adam.label() and again.betas == (0.5, 0.9)
    # a TOML list equals the tuple default: not shown
    assert make_optimizer({"name": "adam", "betas": [0.9, 0.999]}).label() == "adam(lr=0.01,samples=10)"


def test_settings_include_defaults_and_bad_settings_are_one_line():
    assert make_optimizer("cmaes").settings() == {"sigma0": 0.5, "popsize": None, "samples": 10}
    with pytest.raises(OptimizerError, match="bad settings for optimizer 'cem'") as err:
        make_optimizer("cem(bogus=1)")
    assert "\n" not in str(err.value)


def test_a_new_optimizer_records_its_settings_without_passing_them_on():
    @register("test-settings-recorded")
    class Recorded(PolicyOptimizer):
        label_always = ("step",)

        def __init__(self, step: float = 0.1, tries: int = 3, mode: str = "fast"):
            self.step = step

        def iterate(self, objective, start, iterations, generator):
            for _ in range(iterations):
                yield start

    opt = make_optimizer("test-settings-recorded(mode='slow')")
    assert opt.settings() == {"step": 0.1, "tries": 3, "mode": "slow"}
    assert opt.label() == "test-settings-recorded(mode='slow',step=0.1)"
    assert parse_spec(opt.label())[2] == {"mode": "slow", "step": 0.1}
    assert PolicyOptimizer.from_settings.__func__ is Recorded.from_settings.__func__  # declared once, on the base
