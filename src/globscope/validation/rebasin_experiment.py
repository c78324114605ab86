"""The re-basin experiment (Ainsworth et al. 2023, in the Globscope paper's form): pairs of
independently trained networks, the second of each permuted into the first's basin (its whole
training trajectory with the same permutation), one joint landscape of originals and re-basined
models, and per pair: where each lands, and the loss barrier on the straight line before and after.

A permuted network computes the same function; if the landscape is faithful, the re-basined
network lies in its partner's basin (the *partner-basin rate*) and the straight line between the
partners loses its barrier.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from globscope import stages
from globscope.bundle import Bundle, write_model_points
from globscope.checkpoints import MANIFEST, Checkpoint, CheckpointSet
from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path, write_csv, write_json
from globscope.manifolds import load_manifold
from globscope.settings import FitSettings, LandscapeSettings, RebasinSettings, TopologySettings
from globscope.tasks import get_task
from globscope.zoo import VARIANTS, train_runs

log = logging.getLogger(__name__)

MODELS = "models"  # the trained pairs (a checkpoint set) inside the experiment's folder
RECORD = "experiment.json"  # the stages done (the folder's manifest.json is the joint checkpoint set)
REBASINED = "rebasined"  # the permuted trajectories


def pair_runs(n_pairs: int, seed: int) -> list[dict]:
    """Runs ``a00, b00, a01, …``: one training regime, a seed each (independent networks)."""
    bs, lr, wd = VARIANTS[0]
    return [{"name": f"{ab}{i:02d}", "batch_size": bs, "lr": lr, "weight_decay": wd, "momentum": 0.9,
             "seed": seed * 100000 + 2 * i + j} for i in range(n_pairs) for j, ab in enumerate("ab")]


def trained_pairs(settings: RebasinSettings, out: Path, progress=None) -> tuple[CheckpointSet, list]:
    """The experiment's own pairs: trained into ``out/models`` unless they are there already.

    Models already there are reused only when they were trained with the same task, number of
    pairs, seed, epochs and checkpoint interval; otherwise it is an error (they are not retrained
    over: they may be the only copy of hours of work).
    """
    folder = out / MODELS
    task = get_task(settings.task)
    training = {"task": task.name, "pairs": settings.pairs, "seed": settings.seed,
                "epochs": settings.epochs or task.epochs,
                "checkpoint_every": settings.checkpoint_every or task.checkpoint_every}
    if (folder / MANIFEST).is_file():
        cs = CheckpointSet.open(folder)
        done = cs.meta.get("training")
        if done != training:
            raise GlobscopeError(f"{folder}: these models were trained with {done}, not {training}; "
                                 "choose another --out or move the folder away")
    else:
        cs = train_runs(task, pair_runs(settings.pairs, settings.seed), folder, settings.epochs,
                        settings.checkpoint_every, progress=progress, meta={"training": training})
    return cs, [(f"a{i:02d}", f"b{i:02d}") for i in range(settings.pairs)]


def check_permutable(task) -> None:
    """Refuse, before any training or curve, a task whose model re-basin cannot permute: the one-line
    GlobscopeError of :func:`~globscope.validation.rebasin.permutation_spec` names the module (a
    residual block, say)."""
    from globscope.validation.rebasin import permutation_spec

    permutation_spec(task.make_model(), task.train_data.x[:1])


def rebasin_runs(cs: CheckpointSet, task, pairs, out: Path, method: str, seed: int) -> tuple[list, list[dict]]:
    """Permute each pair's second run (its whole trajectory) into the first's basin, with the
    permutation matched on their final checkpoints; the permuted checkpoints are written as
    ``out/rebasined/<B>@<A>/epoch_K.safetensors``.

    Returns
    -------
    checkpoints : list of Checkpoint
        The permuted ones, files relative to ``out``.
    reports : list of dict
        Per pair: ``a``, ``b``, ``run`` (the permuted run's name), ``max_output_diff``,
        ``distance_before``, ``distance_after``.
    """
    from safetensors.torch import save_file

    from globscope.validation.rebasin import permutation_spec, permute_trajectory, rebasin

    x = task.train_data.x[:512]
    spec = permutation_spec(task.make_model(), x[:1])
    cks, reports = [], []
    for a, b in pairs:
        ia, ib = cs.run_indices(a), cs.run_indices(b)
        res = rebasin(task.make_model, cs.state_dict(ia[-1]), cs.state_dict(ib[-1]), x, method=method, seed=seed)
        run = f"{b}@{a}"
        for i, state in zip(ib, permute_trajectory(spec, [cs.state_dict(i) for i in ib], res.perms)):
            c = cs.checkpoints[i]
            rel = f"{REBASINED}/{run}/epoch_{c.position}.safetensors"
            with atomic_path(out / rel) as tmp:
                save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
            cks.append(Checkpoint(file=rel, run=run, variant=run, epoch=c.epoch, step=c.step, task=task.name,
                                  metrics=dict(c.metrics)))
        reports.append({"a": a, "b": b, "run": run, "max_output_diff": res.max_output_diff,
                        "distance_before": res.distance_before, "distance_after": res.distance_after})
    return cks, reports


def joint_set(cs: CheckpointSet, rebasined: list, out: Path) -> CheckpointSet:
    """Originals and re-basined models as one checkpoint set rooted at ``out``."""
    rel = cs.root.resolve().relative_to(out.resolve()) if cs.root.resolve().is_relative_to(out.resolve()) else None
    originals = [Checkpoint(**{**c.__dict__, "file": (Path(rel) / c.file).as_posix() if rel is not None
                               else str((cs.root / c.file).resolve())}) for c in cs.checkpoints]
    joint = CheckpointSet(out, originals + rebasined, task=cs.task or (cs.tasks[0] if len(cs.tasks) == 1 else None),
                          prefix=cs.prefix, meta={"experiment": "rebasin"})
    joint.save()
    return joint


def rebasin_experiment(out, settings: RebasinSettings = RebasinSettings(), checkpoint_set=None,
                       pairs: str | None = None, task: str | None = None, prefix: str | None = None,
                       fit: FitSettings = FitSettings(),
                       landscape: LandscapeSettings = LandscapeSettings(),
                       topology: TopologySettings = TopologySettings(), progress_factory=None) -> dict:
    """Run the experiment into ``out``; return the report (also ``rebasin.json``).

    Parameters
    ----------
    out : path
        The experiment's folder: ``models/`` (when it trains its own), ``rebasined/``,
        ``manifest.json`` (the joint set), ``manifold.pt``, ``landscape.vti``, ``topology/``,
        ``rebasin.json``/``.csv``, ``rebasin.vtp``, ``rebasin.png`` and ``experiment.json`` (the
        stages done: a rerun reuses the re-basined models and the manifold when nothing they
        depend on changed).
    settings : RebasinSettings
    checkpoint_set : path, optional
        A user's set instead of trained pairs; then ``pairs`` ("A-B,C-D") names them.
    task, prefix : str, optional
        Of the user's set: its task (overrides its manifest's) and the key prefix to strip.
    fit, landscape, topology : settings of the joint manifold, its field and its basins.
    progress_factory : callable(description) -> progress(fraction), optional
    """
    from globscope.landscape import BatchedEvaluator
    from globscope.validation import curves as C
    from globscope.validation.connect import parse_pairs

    bar = progress_factory or (lambda desc: None)
    out = Path(out)
    if checkpoint_set is not None:
        cs = stages.open_set(checkpoint_set, prefix=prefix)
        if not pairs:
            raise GlobscopeError("a checkpoint set of your own needs --pairs A-B,C-D (the second of each is "
                                 "re-basined into the first)")
        pair_list = parse_pairs(pairs, cs.runs)
        task = stages.task_name_of(cs, task)
        if task is None:
            raise GlobscopeError(f"{cs.root}: the checkpoint set names no task; give one (--task)")
    else:
        task = settings.task
    task = get_task(task)
    check_permutable(task)  # before minutes of training
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint_set is None:
        cs, pair_list = trained_pairs(settings, out, progress=bar(f"training {2 * settings.pairs} "
                                                                  f"{settings.task} models"))
    # The slow steps are stages of the folder's record: a rerun (another persistence threshold, an
    # interrupted run) reuses the re-basined models and the manifold when their inputs are the same.
    record = Bundle(out, record=RECORD)

    def permute():
        rebasined, reports = rebasin_runs(cs, task, pair_list, out, settings.method, settings.seed)
        joint_set(cs, rebasined, out)
        return {"reports": reports}

    reports = record.stage("rebasin", {"models": cs.fingerprint(), "pairs": pair_list, "method": settings.method,
                                       "seed": settings.seed}, [MANIFEST], permute)["reports"]
    joint = CheckpointSet.open(out)
    models = stages.load_models(joint, task.name, progress=bar("reading checkpoints"))
    fit = fit if fit.epochs or fit.method != "autoencoder" else fit.replace(epochs=settings.fit_epochs)

    def fit_joint():
        stages.fit(models, fit, out=out / "manifold.pt", progress=bar(f"fitting {fit.method}"))

    record.stage("manifold", {"joint": joint.fingerprint(), **fit.to_dict()}, ["manifold.pt"], fit_joint)
    man = load_manifold(out / "manifold.pt")
    Z, errors = stages.project(man, models)
    write_model_points(out / "models.vtp", Z, joint, errors)
    land = stages.landscape_of(man, models, out, landscape, Z=Z, manifold_path=out / "manifold.pt",
                               progress=bar("joint landscape"))
    topo = stages.topology(out / land["files"][0], out / stages.TOPOLOGY, topology, progress=bar("topology"))
    # A model's basin is the minimum of its leaf arc; a model above every saddle is in none.
    basin = {run: b["minimum_vertex"] for run, b in stages.final_model_basins(out / stages.TOPOLOGY, Z,
                                                                              joint).items()}
    final = {r: joint.run_indices(r)[-1] for r in joint.runs}
    ev = BatchedEvaluator(task)
    rows = []
    for rep in reports:
        a, b, pb = rep["a"], rep["b"], rep["run"]
        wa, wb, wpb = (torch.from_numpy(np.array(models.W[final[r]])) for r in (a, b, pb))
        before = C.evaluate_along(ev, C.line(wa, wb), 25)
        after = C.evaluate_along(ev, C.line(wa, wpb), 25)
        rows.append({**rep, "basin_a": basin[a], "basin_b": basin[b], "basin_rebasined": basin[pb],
                     "rebasined_in_partner_basin": basin[a] is not None and basin[pb] == basin[a],
                     "b_in_partner_basin": basin[a] is not None and basin[b] == basin[a],
                     "barrier_before": C.barrier(before["t"], before["loss"]),
                     "barrier_after": C.barrier(after["t"], after["loss"])})
    n = len(rows)
    report = {
        "settings": settings.to_dict(), "fit": fit.to_dict(), "landscape": landscape.to_dict(),
        "topology": topology.to_dict(), "n_pairs": n, "n_models": len(joint), "n_basins": topo["n_basins"],
        "partner_basin_rate": sum(r["rebasined_in_partner_basin"] for r in rows) / n if n else None,
        "partner_basin_rate_before": sum(r["b_in_partner_basin"] for r in rows) / n if n else None,
        "max_output_diff": max((r["max_output_diff"] for r in rows), default=None),
        "median_barrier_before": float(np.median([r["barrier_before"] for r in rows])) if n else None,
        "median_barrier_after": float(np.median([r["barrier_after"] for r in rows])) if n else None,
        "pairs": rows}
    write_points(out / "rebasin.vtp", joint, Z, errors, reports, rows)
    from globscope.validation import plots

    plots.rebasin(report, out / "rebasin.png")
    write_json(out / "rebasin.json", report)
    write_csv(out / "rebasin.csv", rows)
    return report


ROLES = {"a": 0, "b": 1, "rebasined": 2}  # the ``role`` of a point in rebasin.vtp


def write_points(path: Path, joint: CheckpointSet, Z: np.ndarray, errors: np.ndarray, reports: list[dict],
                 rows: list[dict]) -> None:
    """``rebasin.vtp``: every model of the joint set (``models.vtp``'s arrays) with its ``role``
    (0 A, 1 B, 2 re-basined B), its ``pair`` and, for the re-basined, whether it landed in its
    partner's basin (``in_partner_basin``; -1 for the others); one polyline per trajectory."""
    from globscope.bundle import model_point_arrays
    from globscope.vtkxml import write_poly_data

    arrays, lines = model_point_arrays(joint, Z, errors)
    role = np.full(len(joint), -1, np.int32)
    pair = np.full(len(joint), -1, np.int32)
    landed = np.full(len(joint), -1, np.int32)
    for k, (rep, row) in enumerate(zip(reports, rows)):
        for run, r in ((rep["a"], "a"), (rep["b"], "b"), (rep["run"], "rebasined")):
            idx = joint.run_indices(run)
            role[idx], pair[idx] = ROLES[r], k
            if r == "rebasined":
                landed[idx] = int(row["rebasined_in_partner_basin"])
    arrays.update({"role": role, "pair": pair, "in_partner_basin": landed})
    write_poly_data(path, np.asarray(Z)[:, :3], arrays, lines=lines, field_data={"runs": np.array(joint.runs,
                                                                                                  dtype=object)})


__all__ = ["RECORD", "ROLES", "write_points", "pair_runs", "trained_pairs", "rebasin_runs", "joint_set",
           "rebasin_experiment"]
