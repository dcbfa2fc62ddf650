"""Behaviour learning: policies and critics trained on imagined or planned trajectories."""
