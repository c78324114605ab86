"""The embedded default, end to end: one pipeline of cached stages writing one bundle folder.

Stages: ``zoo`` (train the digits-mlp model zoo) → ``manifold`` (fit the autoencoder) →
``compare`` (reconstruction MSE of the autoencoder and the baselines) → ``points`` (models.vtp)
→ ``landscape`` (the loss field on a 128×128 latent grid: landscape.vti, landscape.json)
→ ``summary.json``. Each stage is reused when its settings and inputs are unchanged.
"""

from __future__ import annotations

import logging

from globscope.bundle import Bundle, write_model_points
from globscope.checkpoints import CheckpointSet
from globscope.compare import compare, per_model_error, write_table
from globscope.fileio import read_json, write_json
from globscope.landscape import compute_landscape
from globscope.manifolds import load_manifold, make_manifold
from globscope.tasks import get_task
from globscope.zoo import train_zoo

log = logging.getLogger(__name__)


def run_demo(out, task: str = "digits-mlp", dim: int = 2, seed: int = 0, n_variants: int = 7,
             epochs: int | None = None, progress_factory=None, resolution: int = 128) -> dict:
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

    def comp():
        rows = compare(W, dim, seed=seed, fitted={"autoencoder": ae}, progress=bar("fitting baselines"))
        write_table(rows, root / "reconstruction.csv", root / "reconstruction.json")
        return {"rows": rows}

    rows = b.stage("compare", {"manifold": b.key_of("manifold")},
                   ["reconstruction.csv", "reconstruction.json"], comp)["rows"]

    b.stage("points", {"manifold": b.key_of("manifold")}, ["models.vtp"],
            lambda: write_model_points(root / "models.vtp", ae.transform(W), cs, per_model_error(ae, W)))

    def land():
        s = compute_landscape(ae, t, ae.transform(W), root, resolution=resolution, margin=0.1, W=W,
                              buffers=buffers, manifold_id=b.key_of("manifold"),
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
    landscape = b.stage("landscape", {"manifold": b.key_of("manifold"), "resolution": resolution, "margin": 0.1},
                        land_files, land)

    summary = read_json(root / "summary.json", default={})
    summary.update({
        "task": task, "dim": dim, "n_models": len(cs), "n_params": int(W.shape[1]),
        "n_variants": len(cs.runs), "variants": cs.runs,
        "reconstruction_mse": {r["method"]: r["mse"] for r in rows},
        "reconstruction": rows,
        "landscape": landscape,
        "stage_seconds": {k: v["seconds"] for k, v in b.manifest["stages"].items()},
    })
    write_json(root / "summary.json", summary)
    b.manifest["settings"] = {"task": task, "dim": dim, "seed": seed, "n_variants": n_variants, "epochs": epochs}
    b.manifest["inputs"] = {"zoo": cs.fingerprint()}
    b.save()
    return summary


__all__ = ["run_demo"]
