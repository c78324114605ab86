"""Speed of Globscope's topology engine against gudhi's CubicalComplex and native TTK on one
1024x1024 field, in the same run.

Globscope: vertex order + persistence pairs + join tree + segmentation (``sublevel_sweep``,
``pairs_from_sweep``, ``tree_from_sweep``). gudhi: ``CubicalComplex(top_dimensional_cells=F)
.persistence()``. Native TTK (when pvpython loads its plugin, e.g. from ``PV_PLUGIN_PATH``): the
persistence diagram (minimum-saddle pairs, as the routing asks) plus the join tree with its
segmentation, timed inside pvpython around the filters' updates only (the reader, the start-up and
the data transfer excluded), the same field written to a ``.vti``. Each runs once to warm up
(numba kernels compiled or loaded, TTK's plugin loaded) and the median of ``--repeat`` runs is
reported.

Also ``globscope topology`` end to end (a new process that reads the field, analyses it at the
default threshold and writes every output, then only the CSV tables with ``--outputs tables``)
against its analysis alone.

    .venv/bin/python benchmarks/topology_speed.py [--size 1024] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
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


TTK_SCRIPT = """
import json, statistics, sys, time
import globscope_entry
globscope_entry.setup()
import globscope_state as gs
from paraview.simple import XMLImageDataReader
gs.load_plugins()
from python_filters import ttk as routing
info = routing.detect()
if info["engine"] != "ttk":
    print("RESULT " + json.dumps({"error": info["error"]}))
    sys.exit(0)
src = XMLImageDataReader(FileName=[sys.argv[1]])
src.UpdatePipeline()
times = []
for _ in range(int(sys.argv[2]) + 1):  # the first run warms up
    diagram = routing.persistence_diagram(src, "f")
    tree = routing.merge_tree(src, "f")
    t = time.perf_counter()
    diagram.UpdatePipeline()
    tree.UpdatePipeline()
    times.append(time.perf_counter() - t)
print("RESULT " + json.dumps({"seconds": statistics.median(times[1:]), "version": info["version"]}))
"""


def ttk_time(F, repeat):
    """Median seconds of native TTK's diagram + join tree on ``F``, or (nan, why not)."""
    import shutil
    import tempfile
    from pathlib import Path

    from globscope import paraview_launch as pl
    from globscope.grid import Grid
    from globscope.vtkxml import write_image_data

    if shutil.which("pvpython") is None:
        return float("nan"), "no pvpython"
    with tempfile.TemporaryDirectory() as tmp:
        field, script = Path(tmp) / "f.vti", Path(tmp) / "ttk_speed.py"
        write_image_data(field, {"f": F}, Grid((0.0, 0.0), (1.0, 1.0), F.shape))
        script.write_text(TTK_SCRIPT)
        # TTK's default is every core (OpenMP); the launcher's one-thread default on small machines is lifted
        r = pl.run_script("pvpython", script, [field, repeat], display=False, check=False, timeout=3600,
                          env={"OMP_NUM_THREADS": str(os.cpu_count() or 1)})
    res = [json.loads(ln[7:]) for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if not res:
        return float("nan"), "pvpython failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    if "error" in res[0]:
        return float("nan"), f"TTK absent ({res[0]['error']})"
    return res[0]["seconds"], f"TTK {res[0]['version']}"


def command_time(F, repeat):
    """Median wall seconds of ``globscope topology`` (a new process: start-up, reading, analysis at
    the default threshold, every output written) on ``F``, the same with ``--outputs tables``, and
    of its analysis alone in this process."""
    import subprocess
    import tempfile
    from pathlib import Path

    from globscope.grid import Grid
    from globscope.settings import TopologySettings
    from globscope.topology import analyze
    from globscope.vtkxml import write_image_data

    persistence = TopologySettings().persistence
    with tempfile.TemporaryDirectory() as tmp:
        field = Path(tmp) / "f.vti"
        write_image_data(field, {"f": F}, Grid((0.0, 0.0), (1.0, 1.0), F.shape))
        cmd = [sys.executable, "-m", "globscope", "--no-progress", "topology", str(field), "--array", "f",
               "--out", str(Path(tmp) / "out")]

        walls = [median_time(lambda _, c=c: subprocess.run(c, check=True, capture_output=True), F, repeat)
                 for c in (cmd, cmd + ["--outputs", "tables"])]
    return (*walls, median_time(lambda G: analyze(G, persistence), F, repeat))


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
    t, ttk_label = ttk_time(F, args.repeat)
    cmd_s, tables_s, analysis_s = command_time(F, args.repeat)
    if args.json:
        print(json.dumps({"globscope_s": g, "gudhi_s": h, "ratio": h / g, "ttk_s": t, "ttk_ratio": t / g,
                          "ttk": ttk_label, "command_s": cmd_s, "analysis_s": analysis_s,
                          "command_ratio": cmd_s / analysis_s, "command_tables_s": tables_s}))
    else:
        n_pairs, n_nodes = globscope_run(F)
        print(f"field: {args.size}x{args.size}, {n_pairs} minimum-saddle pairs, {n_nodes} tree nodes")
        rows = [("globscope (pairs + join tree + segmentation)", g), ("gudhi CubicalComplex persistence", h),
                (f"native {ttk_label} (diagram + join tree)", t)]
        for label, sec in rows:
            print(f"{label + ':':<47} {sec:.3f} s (median of {args.repeat})")
        print(f"{'ratio gudhi / globscope:':<47} {h / g:.1f}x")
        print(f"{'ratio native TTK / globscope:':<47} {t / g:.1f}x")
        print(f"{'globscope topology (the command, all outputs):':<47} {cmd_s:.3f} s, "
              f"{cmd_s / analysis_s:.1f}x its analysis ({analysis_s:.3f} s)")
        print(f"{'globscope topology --outputs tables:':<47} {tables_s:.3f} s, {tables_s / analysis_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
