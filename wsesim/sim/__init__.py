"""Discrete-event simulation: stage-level (tile) and PE-level (fabric)."""
