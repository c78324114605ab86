"""The pipeline's stages: the one API that every face calls.

The command line, the demo, the ParaView filters and the states are thin translations of these
functions: each stage takes one settings object (:mod:`globscope.settings`) whose defaults are
defined once, writes what it computes atomically, and records the settings it ran with.

=====================  ======================================================================
stage                  what it does
=====================  ======================================================================
:func:`open_set`       a checkpoint set from its manifest, or a folder tree indexed in memory
:func:`load_models`    the set's weights ``W`` (N, D) and buffers under its task's layout
:func:`fit`            a manifold of the weights, saved with the metadata that finds them again
:func:`manifold_inputs` the manifold a file holds and the models its metadata names
:func:`landscape`      the loss field of a manifold file (resumable; ``landscape.vti``/``.json``);
                       :func:`landscape_of` for a manifold and models already at hand
:func:`topology`       persistence, simplification, join tree, basins (``topology/``)
:func:`project`        models encoded onto a manifold, with their reconstruction error
:func:`final_model_basins` which basin each run's last checkpoint falls into
:func:`render`         the landscape picture and ParaView state of a bundle (pvbatch)
=====================  ======================================================================
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from globscope import names as N
from globscope.errors import GlobscopeError
from globscope.fileio import hash_file, write_json
from globscope.settings import FitSettings, LandscapeSettings, RenderSettings, TopologySettings

if TYPE_CHECKING:  # PyTorch is imported by the stages that need it: `globscope topology` starts in 0.3 s, not 1.5
    from globscope.checkpoints import CheckpointSet
    from globscope.layout import ParameterLayout
    from globscope.tasks import Task

log = logging.getLogger(__name__)


# -- checkpoint sets -------------------------------------------------------------------------------
def open_set(path, prefix: str | None = None) -> CheckpointSet:
    """A checkpoint set from ``manifest.json``, its folder, or a folder tree without a manifest
    (``VARIANT/epoch_K.pt``, …) indexed in memory: nothing is written into the user's folder,
    which may be read-only, and checkpoints added later show up at the next open."""
    from globscope.checkpoints import MANIFEST, CheckpointSet, index_folder

    p = Path(path)
    if p.is_dir() and not (p / MANIFEST).is_file():
        return index_folder(p, prefix=prefix, save=False)
    return CheckpointSet.open(p, prefix=prefix)


def task_name_of(cs: CheckpointSet, task: str | None = None) -> str | None:
    """The task of a set: ``task`` when given, else the one task its manifest names (None when it
    names none). A set naming several tasks needs a choice."""
    if task:
        return task
    tasks = cs.tasks
    if len(tasks) > 1:
        raise GlobscopeError(f"{cs.root}: the checkpoint set names several tasks ({', '.join(tasks)}); "
                             "choose one (--task, or the filter's Task property)")
    return tasks[0] if tasks else None


@dataclass
class Models:
    """A checkpoint set read under a task's layout.

    Attributes
    ----------
    cs : CheckpointSet
    task_name : str or None
    task : Task or None
        None when neither the caller nor the set names a task (the layout is then inferred from
        the first checkpoint; a landscape needs a task).
    layout : ParameterLayout
    W : ndarray of shape (N, D), float32
    buffers : list of dict
        Per model, its buffers (BatchNorm statistics).
    """

    cs: CheckpointSet
    task_name: str | None
    task: Task | None
    layout: ParameterLayout
    W: np.ndarray
    buffers: list

    def require_task(self, where: str) -> Task:
        if self.task is None:
            raise GlobscopeError(f"{where}: no task named (neither by the checkpoint set nor by the manifold); "
                                 "name one (--task, or the filter's Task property)")
        return self.task


def load_models(cs: CheckpointSet, task: str | None = None, progress=None) -> Models:
    """Read every checkpoint of ``cs`` into one weight matrix (see ``CheckpointSet.load_weights``)."""
    from globscope.tasks import get_task

    name = task_name_of(cs, task)
    t = get_task(name) if name else None
    layout = t.layout if t else cs.layout()
    W, buffers = cs.load_weights(layout, progress=progress)
    return Models(cs, name, t, layout, W, buffers)


# -- manifolds -------------------------------------------------------------------------------------
def manifold_meta(models: Models, manifold_path) -> dict:
    """What a manifold file records to find its models again: the task, the checkpoint set (relative
    to the file's folder when it lies below it, so that a bundle can move), the set's key prefix
    and the layout."""
    root = models.cs.root.resolve()
    try:
        where = root.relative_to(Path(manifold_path).resolve().parent).as_posix()
    except ValueError:
        where = str(root)
    return {"task": models.task_name, "checkpoint_set": where, "prefix": models.cs.prefix,
            "layout": models.layout.to_dict()}


def fit(models: Models, settings: FitSettings = FitSettings(), out=None, progress=None):
    """Fit a manifold to the models; with ``out``, save it there (atomically) with its metadata.

    Returns
    -------
    Manifold
    """
    from globscope.manifolds import make_manifold

    man = make_manifold(settings.method, settings.dim, **settings.manifold_params())
    man.fit(models.W, progress=progress)
    if out is not None:
        man.meta_ = manifold_meta(models, out)
        man.save(out)
    return man


def manifold_inputs(manifold_path, task: str | None = None, checkpoint_set=None, progress=None):
    """The manifold a file holds and the models its metadata names.

    A relative checkpoint set in the metadata is taken relative to the manifold file's folder
    (never the current directory); an explicit ``checkpoint_set`` is taken as given. The set is
    read with the key prefix it was fitted with.

    Returns
    -------
    manifold : Manifold
    models : Models
    """
    from globscope.manifolds import load_manifold

    manifold_path = Path(manifold_path)
    man = load_manifold(manifold_path)
    meta = getattr(man, "meta_", {}) or {}
    if checkpoint_set:
        cs_path = Path(checkpoint_set)
    else:
        if not meta.get("checkpoint_set"):
            raise GlobscopeError(f"{manifold_path}: the manifold names no checkpoint set; give one with --set")
        cs_path = Path(meta["checkpoint_set"])
        if not cs_path.is_absolute():
            cs_path = manifold_path.resolve().parent / cs_path
    return man, models_for(man, open_set(cs_path, prefix=meta.get("prefix")), task, manifold_path, progress)


def models_for(manifold, cs: CheckpointSet, task: str | None = None, where="the manifold", progress=None) -> Models:
    """The models of ``cs`` read for ``manifold``: under ``task``, else the one its metadata names,
    else the set's; an error naming ``where`` (the manifold file) when they do not fit it."""
    models = load_models(cs, task or (getattr(manifold, "meta_", None) or {}).get("task"), progress)
    if models.layout.n_params != manifold.n_features_in_:
        raise GlobscopeError(f"{where}: the manifold decodes D = {manifold.n_features_in_} weights, the models "
                             f"of {cs.root} have D = {models.layout.n_params}")
    return models


def project(manifold, models: Models) -> tuple[np.ndarray, np.ndarray]:
    """Models encoded onto a manifold.

    Returns
    -------
    Z : ndarray of shape (N, d)
    errors : ndarray of shape (N,)
        Each model's reconstruction MSE in weight space.
    """
    from globscope.compare import per_model_error

    Z = manifold.transform(models.W)
    return Z, per_model_error(manifold, models.W, Z)


# -- fields ----------------------------------------------------------------------------------------
def landscape(manifold_path, out, settings: LandscapeSettings = LandscapeSettings(), task: str | None = None,
              checkpoint_set=None, manifold_id: str | None = None, progress=None, should_abort=None,
              ctx=None) -> dict | None:
    """The loss field of a manifold file's models over its latent grid, written to ``out``
    (:func:`landscape_of` for the manifold and models :func:`manifold_inputs` finds).

    ``manifold_id`` is the file's hash when the caller has it already (the default hashes it).
    The job's size is checked from the file's header before any checkpoint is read
    (:mod:`globscope.landscape.limits`: too large for this machine, or huge without
    ``settings.allow_huge``, is refused with the numbers).

    Returns
    -------
    dict or None
        The summary (``landscape.json``) on rank 0, None on other ranks.
    """
    from globscope.landscape.limits import estimate
    from globscope.manifolds import read_manifold_info

    info = read_manifold_info(manifold_path)
    estimate(settings, info.dim, out, task or info.meta.get("task")).check(settings.allow_huge)
    man, models = manifold_inputs(manifold_path, task, checkpoint_set)
    return landscape_of(man, models, out, settings, manifold_path=manifold_path,
                        manifold_id=manifold_id or hash_file(manifold_path), progress=progress,
                        should_abort=should_abort, ctx=ctx)


def landscape_of(manifold, models: Models, out, settings: LandscapeSettings = LandscapeSettings(), Z=None,
                 manifold_path=None, manifold_id: str | None = None, progress=None, should_abort=None,
                 ctx=None) -> dict | None:
    """The loss field of ``models``' task over ``manifold``'s latent grid, written to ``out``.

    See :func:`globscope.landscape.compute_landscape` (``landscape.vti``, or ``.npz`` and slices
    for d = 4; ``landscape.json``; the chunk store that makes it resumable).

    Parameters
    ----------
    Z : array of shape (N, d), optional
        The models encoded, when already at hand.
    manifold_path : path, optional
        The manifold's file, recorded in ``landscape.json``.
    manifold_id : str, optional
        Identifies the manifold in the chunk store's key (its file's hash).

    Returns
    -------
    dict or None
        The summary (``landscape.json``) on rank 0, None on other ranks.
    """
    from globscope.landscape import compute_landscape

    task = models.require_task(str(manifold_path or "the landscape"))
    Z = manifold.transform(models.W) if Z is None else Z
    return compute_landscape(manifold, task, Z, out, settings, W=models.W, buffers=models.buffers,
                             manifold_id=manifold_id,
                             manifold_path=Path(manifold_path).resolve() if manifold_path else None,
                             sources=[str(models.cs.path(i)) for i in range(len(models.W))], progress=progress,
                             should_abort=should_abort, ctx=ctx)


TOPOLOGY = "topology"  # a bundle's topology folder
TOPOLOGY_JSON = "topology.json"  # what the topology stage records (counts, files, settings)


def landscape_record(folder) -> dict:
    """The ``landscape.json`` a landscape stage wrote into ``folder``: its settings, its field's
    file (``files[0]``), the manifold it was computed for."""
    path = Path(folder) / "landscape.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        record, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "no settings or no field file"
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) or not record.get("files"):
        raise GlobscopeError(f"{path}: no readable landscape record ({why}); "
                             "compute it with `globscope landscape` or the demo")
    return record


def recorded_topology_settings(bundle) -> TopologySettings:
    """The settings a bundle's topology was computed with (``topology/topology.json``), or the
    defaults when it has none: what its state and renders show."""
    path = Path(bundle) / TOPOLOGY / TOPOLOGY_JSON
    if not path.is_file():
        return TopologySettings()
    try:
        return TopologySettings.from_dict(json.loads(path.read_text())["settings"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GlobscopeError(f"{path}: unreadable topology record ({type(e).__name__}: {e}); "
                             "recompute it with `globscope topology`") from None


def topology(field_path, out, settings: TopologySettings = TopologySettings(), progress=None,
             should_abort=None, engine: str = "globscope", outputs=N.TOPOLOGY_OUTPUTS) -> dict:
    """Persistence pairs, simplification, join tree and basins of a field file (``.vti``, or
    ``.npz`` for d = 4), written to ``out`` with ``topology.json`` (which records ``settings`` and
    the engine that ran).

    ``engine``: ``globscope`` (:func:`globscope.topology.analyze`), ``ttk`` (native TTK through
    pvpython, :mod:`globscope.topology.native`; an error where it cannot run) or ``auto`` (TTK where
    it runs, else Globscope's). Both engines write the same files with the same content.
    ``outputs``: which files to write besides ``topology.json`` (``names.TOPOLOGY_OUTPUTS``: the
    CSV tables, the merge tree, the field with its basins); the later stages read the field.

    Returns
    -------
    dict
        The summary written to ``topology.json``.
    """
    from globscope.topology import analyze
    from globscope.topology.export import check_outputs, read_grid_field, summary, write_topology
    from globscope.topology.native import TTKUnavailable, analyze_native

    if engine not in N.TOPOLOGY_ENGINES:
        raise GlobscopeError(f"topology engine {engine!r}: choose one of {', '.join(N.TOPOLOGY_ENGINES)}")
    check_outputs(outputs)
    field = read_grid_field(field_path, settings.array)
    result = None
    if engine != "globscope":
        try:
            result = analyze_native(field, settings.persistence, settings.absolute)
        except TTKUnavailable as e:
            if engine == "ttk":
                raise
            log.info("topology: %s; using Globscope's engine", e)
    if result is None:
        try:
            result = analyze(field.values, settings.persistence, settings.absolute, progress=progress,
                             should_abort=should_abort)
        except GlobscopeError as e:
            raise GlobscopeError(f"{field.path} [{field.name}]: {e}") from None
    out = Path(out)
    s = summary(result, field, settings)
    s["files"] = write_topology(result, field, out, outputs)
    write_json(out / TOPOLOGY_JSON, s)
    return s


def final_model_basins(topology_dir, Z: np.ndarray, cs: CheckpointSet) -> dict:
    """Which basin each run's last checkpoint falls into.

    The basin of a point is the join-tree arc (``SegmentationId``) of its nearest grid vertex in
    the simplified field; arcs ``0 .. n_basins-1`` are the basins of the minima (leaf arcs).

    Parameters
    ----------
    topology_dir : path
        Output folder of :func:`topology`.
    Z : array of shape (N, d)
        The models of ``cs``, encoded.

    Returns
    -------
    dict
        run -> {"epoch", "latent" (d,), "basin" (arc id), "is_leaf_basin", "minimum_vertex"}.
    """
    from globscope.topology.basins import basin_of_points
    from globscope.topology.export import read_grid_field

    topology_dir = Path(topology_dir)
    vti = topology_dir / "topology.vti"
    seg = read_grid_field(vti if vti.exists() else topology_dir / "topology.npz", N.SEGMENTATION_ID)
    with open(topology_dir / "merge_tree_nodes.csv", newline="") as f:
        nodes = list(csv.DictReader(f))
    leaf_vertices = [int(r["vertex_id"]) for r in nodes if int(r["critical_type"]) == N.CriticalType.MINIMUM]
    last = [cs.run_indices(run)[-1] for run in cs.runs]
    arcs, _ = basin_of_points(seg.grid, seg.values, np.asarray(Z)[last])
    out = {}
    for run, i, arc in zip(cs.runs, last, arcs.tolist()):
        leaf = 0 <= arc < len(leaf_vertices)
        out[run] = {"epoch": cs.checkpoints[i].epoch, "latent": np.asarray(Z)[i].tolist(), "basin": arc,
                    "is_leaf_basin": leaf, "minimum_vertex": leaf_vertices[arc] if leaf else None}
    return out


# -- pictures --------------------------------------------------------------------------------------
def render(bundle, out_png=None, settings: RenderSettings = RenderSettings(), state=None, save_state: bool = False):
    """The bundle's landscape as a PNG through pvbatch (``xvfb-run`` without a display), and with
    ``save_state`` its ParaView state ``globscope.pvsm``. The picture shows the topology settings
    the bundle records (:func:`recorded_topology_settings`).

    Returns
    -------
    Path
        The PNG.
    """
    from globscope import paraview_launch

    bundle = Path(bundle)
    if save_state:
        paraview_launch.save_state(bundle)
    return paraview_launch.render(bundle, out_png or bundle / "landscape.png", settings.size, state=state)


__all__ = ["open_set", "task_name_of", "Models", "load_models", "manifold_meta", "fit", "manifold_inputs",
           "models_for", "project", "landscape", "landscape_of", "topology", "recorded_topology_settings",
           "final_model_basins", "landscape_record", "render", "TOPOLOGY", "TOPOLOGY_JSON"]
