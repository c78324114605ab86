"""Fidelity checks of a landscape: mode-connectivity curves, re-basin, saddle paths."""
