"""Reconstruction error of every manifold method on the same set, as in the paper's Table 1."""

from __future__ import annotations

import numpy as np

from globscope.fileio import write_csv, write_json
from globscope.manifolds import METHODS, make_manifold


def compare(W, dim: int = 2, methods=None, seed: int = 0, params: dict | None = None,
            fitted: dict | None = None, progress=None) -> list[dict]:
    """Fit each method on W (N, D) and measure its reconstruction MSE in weight space.

    Every method sees the same standardised W and is scored by the same function
    (``Manifold.reconstruction_mse``: mean over all N×D entries of the squared error).

    ``fitted`` maps method names to manifolds already fitted on this W (reused, not refitted).

    Returns
    -------
    list of dict
        One row per method: method, dim, mse, fit_seconds.
    """
    methods = list(methods or METHODS)
    rows = []
    for i, m in enumerate(methods):
        man = (fitted or {}).get(m) or make_manifold(m, dim, seed=seed, **(params or {}).get(m, {})).fit(W)
        rows.append({"method": m, "dim": dim, "mse": man.reconstruction_mse(W),
                     "fit_seconds": round(man.fit_seconds_, 3)})
        if progress:
            progress((i + 1) / len(methods))
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table, lowest error marked."""
    best = min(r["mse"] for r in rows)
    lines = [f"{'method':<12} {'d':>2} {'reconstruction MSE':>19} {'fit s':>8}"]
    for r in rows:
        mark = "  <- lowest" if r["mse"] == best else ""
        lines.append(f"{r['method']:<12} {r['dim']:>2} {r['mse']:>19.6g} {r['fit_seconds']:>8.2f}{mark}")
    return "\n".join(lines)


def write_table(rows: list[dict], out_csv, out_json=None) -> None:
    """Write the rows as CSV (and JSON, keyed by method), atomically."""
    write_csv(out_csv, rows, ["method", "dim", "mse", "fit_seconds"])
    if out_json:
        write_json(out_json, {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows})


def per_model_error(manifold, W, Z=None) -> np.ndarray:
    """Reconstruction MSE of each model, shape (N,).

    Parameters
    ----------
    W : array of shape (N, D)
    Z : array of shape (N, d), optional
        ``manifold.transform(W)`` when already at hand (encoding can be costly: UMAP optimises).
    """
    W = np.asarray(W, dtype=np.float32)
    Z = manifold.transform(W) if Z is None else Z
    return np.mean((manifold.inverse_transform(Z).astype(np.float64) - W) ** 2, axis=1)


__all__ = ["compare", "format_table", "write_table", "per_model_error"]
