"""optbench: learned (amortized) policy optimizers vs classical optimizers on frozen SAC objectives."""

__version__ = "0.1.0"
