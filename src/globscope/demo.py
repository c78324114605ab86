"""The embedded default, end to end: one pipeline of cached stages writing one bundle folder.

Stages: ``zoo`` (train the digits-mlp model zoo) → ``manifold`` (fit the autoencoder) →
``compare`` (reconstruction MSE of the autoencoder and the baselines) → ``points`` (models.vtp)
→ ``landscape`` (the loss field on a 128×128 latent grid: landscape.vti, landscape.json)
→ ``topology`` (basins of log10 loss: topology/) → ``render`` (landscape.png, globscope.pvsm
through pvbatch) → ``summary.json``. Each stage is reused when its settings and inputs are unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from globscope.bundle import Bundle, write_model_points
from globscope.checkpoints import CheckpointSet
from globscope.compare import compare, per_model_error, write_table
from globscope.errors import GlobscopeError
from globscope.fileio import hash_file, read_json, write_json
from globscope.landscape import LatentGrid, compute_landscape
from globscope.manifolds import load_manifold, make_manifold
from globscope.tasks import get_task
from globscope.topology.export import read_grid_field, run_topology
from globscope.zoo import train_zoo

log = logging.getLogger(__name__)


# Basins are counted on log10(loss): topology does not change under a monotone map, but the
# persistence threshold, a fraction of the range, then measures depth in orders of magnitude.
TOPOLOGY_ARRAY = "log_loss"


def final_model_basins(topology_dir, Z, cs: CheckpointSet) -> dict:
    """Which basin each run's last checkpoint falls into.

    The basin of a point is the join-tree arc (``SegmentationId``) of its nearest grid vertex in
    the simplified field; arcs ``0 .. n_basins-1`` are the basins of the minima (leaf arcs).

    Returns
    -------
    dict
        run -> {"epoch", "latent" (d,), "basin" (arc id), "is_leaf_basin", "minimum_vertex"}.
    """
    topology_dir = Path(topology_dir)
    vti = topology_dir / "topology.vti"
    f = read_grid_field(vti if vti.exists() else topology_dir / "topology.npz", "SegmentationId")
    nodes = np.loadtxt(topology_dir / "merge_tree_nodes.csv", delimiter=",", skiprows=1, ndmin=2)
    leaf_vertices = nodes[nodes[:, 3] == 0, 1].astype(np.int64)
    grid = LatentGrid(f.origin[:f.values.ndim], f.spacing[:f.values.ndim], f.values.shape)
    out = {}
    for run in cs.runs:
        last = cs.run_indices(run)[-1]
        vid, _ = grid.nearest_vertex(Z[last:last + 1])
        arc = int(f.values.ravel(order="F")[vid[0]])
        leaf = 0 <= arc < len(leaf_vertices)
        out[run] = {"epoch": cs.checkpoints[last].epoch, "latent": Z[last].tolist(), "basin": arc,
                    "is_leaf_basin": leaf, "minimum_vertex": int(leaf_vertices[arc]) if leaf else None}
    return out


def render_bundle(root) -> dict:
    """``landscape.png`` and ``globscope.pvsm`` through pvbatch; a missing ParaView is reported,
    not fatal (the rest of the bundle stands without it)."""
    from globscope import paraview_launch

    try:
        paraview_launch.save_state(root)
        paraview_launch.render(root, Path(root) / "landscape.png")
    except GlobscopeError as e:
        log.warning("render skipped: %s", e)
        return {"error": str(e)}
    return {"png": "landscape.png", "state": "globscope.pvsm"}


def run_demo(out, task: str = "digits-mlp", dim: int = 2, seed: int = 0, n_variants: int = 7,
             epochs: int | None = None, progress_factory=None, resolution: int = 128,
             persistence: float = 0.05, with_render: bool = True) -> dict:
    """Run the demo pipeline into ``out`` and return the summary (also in ``summary.json``).

    ``progress_factory(description)`` returns a ``progress(fraction)`` callback (the CLI's bars).
    """
    bar = progress_factory or (lambda desc: None)
    b = Bundle(out)
    root = b.root
    t = get_task(task)

    zoo_key = {"task": task, "n_variants": n_variants, "epochs": epochs, "seed": seed}
    b.stage("zoo", zoo_key, ["zoo/manifest.json"],
            lambda: {"n_checkpoints": len(train_zoo(t, root / "zoo", n_variants=n_variants, epochs=epochs,
                                                    seed=seed, progress=bar(f"training {task} zoo")))})
    cs = CheckpointSet.open(root / "zoo")
    W, buffers = cs.load_weights(t.layout)

    fit_key = {"zoo": cs.fingerprint(), "method": "autoencoder", "dim": dim, "seed": seed}

    def fit():
        man = make_manifold("autoencoder", dim, seed=seed).fit(W, progress=bar("fitting autoencoder"))
        man.meta_ = {"task": task, "checkpoint_set": "zoo", "layout": t.layout.to_dict()}
        man.save(root / "manifold.pt")
        return {"epochs": man.n_epochs_, "fit_seconds": round(man.fit_seconds_, 2)}

    b.stage("manifold", fit_key, ["manifold.pt"], fit)
    ae = load_manifold(root / "manifold.pt")
    # Later stages key on the files they read, not on the settings that made them: a manifold
    # refitted in place (another device, `globscope fit --out`) invalidates everything after it.
    inputs = {"zoo": cs.fingerprint(), "manifold": hash_file(root / "manifold.pt")}
    Z = ae.transform(W)

    def comp():
        rows = compare(W, dim, seed=seed, fitted={"autoencoder": ae}, progress=bar("fitting baselines"))
        write_table(rows, root / "reconstruction.csv", root / "reconstruction.json")
        return {"rows": rows}

    rows = b.stage("compare", inputs,
                   ["reconstruction.csv", "reconstruction.json"], comp)["rows"]

    b.stage("points", inputs, ["models.vtp"],
            lambda: write_model_points(root / "models.vtp", Z, cs, per_model_error(ae, W)))

    def land():
        s = compute_landscape(ae, t, Z, root, resolution=resolution, margin=0.1, W=W,
                              buffers=buffers, manifold_id=inputs["manifold"],
                              progress=bar(f"loss landscape {resolution}×{resolution}" if dim == 2
                                           else f"loss landscape {resolution}^{dim}"))
        fid = s.get("fidelity", {})
        return {"resolution": resolution, "n_points": s["n_points"], "files": s["files"] + ["landscape.json"],
                "points_per_second": s["points_per_second"], "eval_seconds": s["eval_seconds"],
                "formulation": s["engine"]["formulation"], "device": s["engine"]["device"],
                "loss_min": s["loss"]["min"], "loss_max": s["loss"]["max"],
                "non_finite_loss": s["non_finite_loss"]["total"],
                "fidelity_mae": fid.get("field_vs_direct", {}).get("mae"),
                "fidelity_max": fid.get("field_vs_direct", {}).get("max")}

    land_files = ["landscape.vti" if dim <= 3 else "landscape.npz", "landscape.json"]
    landscape = b.stage("landscape", {**inputs, "resolution": resolution, "margin": 0.1},
                        land_files, land)

    land_file = root / land_files[0]
    topo_files = ["topology/topology.json", "topology/merge_tree_nodes.csv", "topology/persistence_pairs.csv"]
    topology = b.stage("topology", {"landscape": hash_file(land_file), "array": TOPOLOGY_ARRAY,
                                    "persistence": persistence},
                       topo_files, lambda: run_topology(land_file, TOPOLOGY_ARRAY, persistence, out=root / "topology",
                                                        progress=bar("topology")))
    basins = final_model_basins(root / "topology", Z, cs)

    render = {}
    if dim <= 3 and with_render:
        from globscope.paraview_launch import state_files_dir

        render = b.stage("render", {"landscape": hash_file(land_file),
                                    "topology": hash_file(root / "topology" / "merge_tree_nodes.csv"),
                                    "state": hash_file(state_files_dir() / "globscope_state.py")},
                         ["landscape.png", "globscope.pvsm"], lambda: render_bundle(root))

    summary = read_json(root / "summary.json", default={})
    summary.update({
        "task": task, "dim": dim, "n_models": len(cs), "n_params": int(W.shape[1]),
        "n_variants": len(cs.runs), "variants": cs.runs,
        "reconstruction_mse": {r["method"]: r["mse"] for r in rows},
        "reconstruction": rows,
        "landscape": landscape,
        "topology": {"array": TOPOLOGY_ARRAY, "persistence": persistence,
                     "threshold": topology["threshold"], "n_minima_input": topology["n_minima_input"],
                     "n_basins": topology["n_basins"]},
        "n_basins": topology["n_basins"],
        "final_model_basins": basins,
        "n_basins_of_final_models": len({v["basin"] for v in basins.values()}),
        "render": render,
        "stage_seconds": {k: v["seconds"] for k, v in b.manifest["stages"].items()},
    })
    write_json(root / "summary.json", summary)
    b.manifest["settings"] = {"task": task, "dim": dim, "seed": seed, "n_variants": n_variants, "epochs": epochs}
    b.manifest["inputs"] = {"zoo": cs.fingerprint()}
    b.save()
    return summary


__all__ = ["run_demo"]
