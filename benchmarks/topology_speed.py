"""Speed of Globscope's topology engine against gudhi's CubicalComplex on one 1024x1024 field.

Globscope: vertex order + persistence pairs + join tree + segmentation (``sublevel_sweep``,
``pairs_from_sweep``, ``tree_from_sweep``). gudhi: ``CubicalComplex(top_dimensional_cells=F)
.persistence()``. Both run on the same field after one warm-up run (which also compiles the
numba kernels, or loads them from the cache); the median of ``--repeat`` runs is reported.

    .venv/bin/python benchmarks/topology_speed.py [--size 1024] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from globscope.topology.merge_tree import tree_from_sweep
from globscope.topology.persistence import pairs_from_sweep
from globscope.topology.sweep import sublevel_sweep


def landscape(n: int, seed: int = 0) -> np.ndarray:
    """A loss-landscape-like field: a bowl, Gaussian wells and small-scale noise, ``F[i, j]``."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    F = 0.5 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2)
    for _ in range(12):
        cx, cy = rng.random(2)
        F -= rng.uniform(0.2, 1.0) * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * 0.05 ** 2))
    return F + 0.01 * rng.standard_normal((n, n))


def globscope_run(F):
    sw = sublevel_sweep(F)
    pairs = pairs_from_sweep(sw)
    tree = tree_from_sweep(sw)
    return len(pairs), tree.n_nodes


def gudhi_run(F):
    import gudhi

    cc = gudhi.CubicalComplex(top_dimensional_cells=F)
    return len(cc.persistence())


def median_time(fn, F, repeat):
    fn(F)  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(F)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)
    F = landscape(args.size)
    g = median_time(globscope_run, F, args.repeat)
    try:
        h = median_time(gudhi_run, F, args.repeat)
    except ImportError:
        h = float("nan")
    ratio = h / g
    if args.json:
        print(json.dumps({"globscope_s": g, "gudhi_s": h, "ratio": ratio}))
    else:
        n_pairs, n_nodes = globscope_run(F)
        print(f"field: {args.size}x{args.size}, {n_pairs} minimum-saddle pairs, {n_nodes} tree nodes")
        print(f"globscope (pairs + join tree + segmentation): {g:.3f} s (median of {args.repeat})")
        print(f"gudhi CubicalComplex persistence:             {h:.3f} s (median of {args.repeat})")
        print(f"ratio gudhi / globscope:                      {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
