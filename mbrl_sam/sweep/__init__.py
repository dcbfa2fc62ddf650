"""Sweeps: a grid of runs (a suite x settings x seeds), launched and tracked."""
