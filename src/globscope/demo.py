"""The embedded default, end to end: the pipeline's stages (:mod:`globscope.stages`) as cached
steps of one bundle folder.

Steps: ``zoo`` (train the digits-mlp model zoo) → ``manifold`` (fit the autoencoder) →
``compare`` (the baselines, saved in manifolds/, and the reconstruction MSE of every method) →
``points`` (models.vtp) → ``landscape`` (the loss field on the latent grid: landscape.vti,
landscape.json) → ``topology`` (basins of log10 loss: topology/) → ``render`` (landscape.png,
globscope.pvsm through pvbatch) → ``summary.json``, with ``validation`` (mode-connectivity curves
projected onto every manifold, saddle paths: validation/) before the render, which draws its
curves. Each step is reused when its settings and the files it reads are unchanged.
"""

from __future__ import annotations

import logging

from globscope import stages
from globscope.bundle import Bundle, write_model_points
from globscope.compare import compare, write_table
from globscope.errors import GlobscopeError
from globscope.fileio import hash_file, read_json, write_json
from globscope.manifolds import load_manifold
from globscope.names import MANIFOLD_METHODS
from globscope.settings import DemoSettings
from globscope.validation.report import MANIFOLDS, VALIDATION, validate
from globscope.zoo import train_zoo

log = logging.getLogger(__name__)


def run_demo(out, settings: DemoSettings = DemoSettings(), progress_factory=None) -> dict:
    """Run the demo pipeline into ``out`` and return the summary (also in ``summary.json``).

    ``progress_factory(description)`` returns a ``progress(fraction)`` callback (the CLI's bars).
    """
    bar = progress_factory or (lambda desc: None)
    b = Bundle(out)
    root = b.root
    zs = settings.zoo

    b.stage("zoo", zs.to_dict(), ["zoo/manifest.json"],
            lambda: {"n_checkpoints": len(train_zoo(zs, root / "zoo", progress=bar(f"training {zs.task} zoo")))})
    cs = stages.open_set(root / "zoo")
    models = stages.load_models(cs)

    def fit():
        man = stages.fit(models, settings.fit, out=root / "manifold.pt",
                         progress=bar(f"fitting {settings.fit.method}"))
        return {"epochs": getattr(man, "n_epochs_", None), "fit_seconds": round(man.fit_seconds_, 2)}

    b.stage("manifold", {"zoo": cs.fingerprint(), **settings.fit.to_dict()}, ["manifold.pt"], fit)
    man = load_manifold(root / "manifold.pt")
    # Later steps key on the files they read, not on the settings that made them: a manifold
    # refitted in place (another device, `globscope fit --out`) invalidates everything after it.
    inputs = {"zoo": cs.fingerprint(), "manifold": hash_file(root / "manifold.pt")}
    Z, errors = stages.project(man, models)

    baselines = [m for m in MANIFOLD_METHODS if m != man.method]

    def comp():
        fitted = {man.method: man}
        for m in baselines:  # saved: the validation projects onto every manifold
            fitted[m] = stages.fit(models, settings.fit.replace(method=m), out=root / MANIFOLDS / f"{m}.pt")
        rows = compare(models.W, settings.fit.dim, seed=settings.fit.seed, fitted=fitted,
                       progress=bar("fitting baselines"))
        write_table(rows, root / "reconstruction.csv", root / "reconstruction.json")
        return {"rows": rows}

    rows = b.stage("compare", inputs, ["reconstruction.csv", "reconstruction.json",
                                       *(f"{MANIFOLDS}/{m}.pt" for m in baselines)], comp)["rows"]
    b.stage("points", inputs, ["models.vtp"], lambda: write_model_points(root / "models.vtp", Z, cs, errors))

    ls = settings.landscape
    n_points = ls.n_points(settings.fit.dim)

    def land():
        s = stages.landscape_of(man, models, root, ls, Z=Z, manifold_path=root / "manifold.pt",
                                manifold_id=inputs["manifold"], progress=bar(f"loss landscape, {n_points} points"))
        fid = s.get("fidelity", {}).get("field_vs_direct", {})
        return {"n_points": s["n_points"], "shape": s["grid"]["shape"], "files": s["files"] + ["landscape.json"],
                "points_per_second": s["points_per_second"], "eval_seconds": s["eval_seconds"],
                "formulation": s["engine"]["formulation"], "device": s["engine"]["device"],
                "loss_min": s["loss"]["min"], "loss_max": s["loss"]["max"],
                "non_finite_loss": s["non_finite_loss"]["total"],
                "fidelity_mae": fid.get("mae"), "fidelity_max": fid.get("max")}

    land_files = ["landscape.vti" if settings.fit.dim <= 3 else "landscape.npz", "landscape.json"]
    landscape = b.stage("landscape", {**inputs, **ls.to_dict()}, land_files, land)

    land_file = root / land_files[0]
    ts = settings.topology
    topo = root / stages.TOPOLOGY
    topology = b.stage("topology", {"landscape": hash_file(land_file), **ts.to_dict()},
                       [f"{stages.TOPOLOGY}/{f}" for f in (stages.TOPOLOGY_JSON, "merge_tree_nodes.csv")],
                       lambda: stages.topology(land_file, topo, ts, progress=bar("topology")))
    basins = stages.final_model_basins(topo, Z, cs)

    validation = {}
    if settings.with_validation:
        validation = b.stage("validation", {**inputs, "landscape": hash_file(land_file),
                                            "topology": hash_file(topo / stages.TOPOLOGY_JSON),
                                            "baselines": [hash_file(root / MANIFOLDS / f"{m}.pt") for m in baselines],
                                            "connect": settings.connect.to_dict(), "paths": settings.paths.to_dict()},
                             [f"{VALIDATION}/report.md", "validation.json"],
                             lambda: validate(root, settings.connect, settings.paths, progress_factory=bar))

    render = {}
    if settings.fit.dim <= 3 and settings.with_render:
        from globscope.paraview_launch import state_script

        def draw():
            try:
                stages.render(root, settings=settings.render, save_state=True)
            except GlobscopeError as e:  # no ParaView: the rest of the bundle stands without the picture
                log.warning("render skipped: %s", e)
                return {"error": str(e)}
            return {"png": "landscape.png", "state": "globscope.pvsm"}

        render = b.stage("render", {"landscape": hash_file(land_file),
                                    "topology": hash_file(topo / stages.TOPOLOGY_JSON),
                                    "state": hash_file(state_script()),
                                    "validation": validation.get("files") and hash_file(root / "validation.json"),
                                    **settings.render.to_dict()},
                         ["landscape.png", "globscope.pvsm"], draw)

    summary = read_json(root / "summary.json", default={})
    summary.update({
        "task": zs.task, "dim": settings.fit.dim, "n_models": len(cs), "n_params": int(models.W.shape[1]),
        "n_variants": len(cs.runs), "variants": cs.runs,
        "reconstruction_mse": {r["method"]: r["mse"] for r in rows},
        "reconstruction": rows,
        "landscape": landscape,
        "topology": {"settings": ts.to_dict(), "threshold": topology["threshold"],
                     "n_minima_input": topology["n_minima_input"], "n_basins": topology["n_basins"]},
        "n_basins": topology["n_basins"],
        "final_model_basins": basins,
        "n_basins_of_final_models": len({v["basin"] for v in basins.values()}),
        "render": render,
        "connectivity": validation.get("connectivity"),
        "paths": validation.get("paths"),
        "stage_seconds": {k: v["seconds"] for k, v in b.manifest["stages"].items()},
    })
    write_json(root / "summary.json", summary)
    b.manifest["settings"] = settings.to_dict()
    b.manifest["inputs"] = {"zoo": cs.fingerprint()}
    b.save()
    return summary


__all__ = ["run_demo"]
