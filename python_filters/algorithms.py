"""Globscope's VTK algorithms (``VTKPythonAlgorithmBase``), undecorated: usable from plain
``vtkmodules`` and wrapped by the thin ParaView proxies in :mod:`python_filters.proxies`.

Every algorithm passes ``progress`` / ``should_abort`` callbacks to the core (``UpdateProgress``,
``CheckAbort``) and keeps its last result under a key of everything that determines it, so that
re-executing with unchanged inputs and settings (ParaView does that when an unrelated property
changes) reuses the result instead of recomputing it.

Topology outputs follow TTK's port layout and array names (DESIGN.md), so downstream filters and
states do not care which engine ran.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonCore import vtkOutputWindow
from vtkmodules.vtkCommonDataModel import VTK_LINE, VTK_VERTEX, vtkDataObject, vtkImageData, vtkPolyData, vtkTable
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm, vtkStreamingDemandDrivenPipeline

from globscope.errors import Aborted, GlobscopeError
from python_filters import vtkconv as vc

log = logging.getLogger("globscope.filters")

METHODS = ("autoencoder", "pca", "kernel-pca", "umap")
DEVICES = ("auto", "cpu", "cuda")
BN_MODES = ("recompute", "reference")


def cache_dir() -> Path:
    """Where fitted manifolds and landscapes are kept between executions and sessions."""
    d = Path(os.environ.get("GLOBSCOPE_CACHE") or Path.home() / ".cache" / "globscope" / "paraview")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _hash(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def _error(msg: str) -> None:
    vtkOutputWindow.GetInstance().DisplayErrorText(f"Globscope: {msg}\n")


class GlobscopeAlgorithm(VTKPythonAlgorithmBase):
    """Shared plumbing: progress/abort callbacks, result cache, error reporting."""

    def __init__(self, **kw):
        VTKPythonAlgorithmBase.__init__(self, **kw)
        self._cache_key = None
        self._cache = None
        self.n_computed = 0  # how many times the expensive part ran (tests read it)

    # progress in [lo, hi] of the whole execution
    def _progress(self, lo=0.0, hi=1.0):
        def cb(f):
            self.UpdateProgress(lo + (hi - lo) * min(max(float(f), 0.0), 1.0))
            if self._should_abort():
                raise Aborted("aborted")
        return cb

    def _should_abort(self) -> bool:
        try:
            self.CheckAbort()
        except AttributeError:  # VTK < 9.3
            pass
        return bool(self.GetAbortExecute())

    def _cached(self, key, compute):
        """``compute()`` unless ``key`` equals the last execution's key."""
        if key is not None and key == self._cache_key and self._cache is not None:
            return self._cache
        value = compute()
        self.n_computed += 1
        self._cache_key, self._cache = key, value
        return value

    def RequestData(self, request, inInfo, outInfo):
        t0 = time.perf_counter()
        try:
            self.UpdateProgress(0.0)
            self.execute(inInfo, outInfo)
            self.UpdateProgress(1.0)
            return 1
        except Aborted:  # the user pressed abort; finished work stays cached
            _error(f"{type(self).__name__}: aborted by the user")
            return 0
        except GlobscopeError as e:  # the user's mistake (or the core's abort): its message only
            _error(f"{type(self).__name__}: {e}")
            return 0
        except Exception:  # noqa: BLE001 - a bug: the traceback, in ParaView's output window; keep the session
            import traceback

            _error(f"{type(self).__name__} failed:\n{traceback.format_exc()}")
            return 0
        finally:
            log.debug("%s: %.3f s", type(self).__name__, time.perf_counter() - t0)

    def execute(self, inInfo, outInfo):  # pragma: no cover - abstract
        raise NotImplementedError


def _file_stamp(path) -> tuple:
    """(resolved path, st_mtime_ns, st_size): a cache key part that changes when the file is
    rewritten in place."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise GlobscopeError(f"{p}: manifold file not found")
    st = p.stat()
    return (str(p), st.st_mtime_ns, st.st_size)


# -- checkpoint sets -------------------------------------------------------------------------------
def index_in_memory(root):
    """The checkpoint set of the tree ``root`` (``VARIANT/epoch_K.pt``, …), indexed without writing
    ``manifest.json`` into the user's folder: data folders may be read-only, and a saved index
    would hide checkpoints added later."""
    from globscope.checkpoints import index_folder

    return index_folder(root, save=False)


def _tree_stamp(root) -> tuple:
    """(relative path, size, mtime) of every checkpoint-like file under ``root``: changes when
    files are added, removed or rewritten."""
    from globscope.checkpoints import SUFFIXES

    root = Path(root)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in SUFFIXES and p.is_file():
            st = p.stat()
            out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def open_checkpoint_set(path):
    """A checkpoint set from ``manifest.json``, its folder, or a folder tree indexed in memory
    (nothing is written into the folder)."""
    from globscope.checkpoints import MANIFEST, CheckpointSet

    p = Path(path)
    if p.is_dir() and not (p / MANIFEST).is_file():
        return index_in_memory(p)
    return CheckpointSet.open(p)


class CheckpointSetReader(GlobscopeAlgorithm):
    """Reads a checkpoint set's manifest: one table row per checkpoint.

    Columns: ``file``, ``run``, ``variant``, ``variant_id``, ``epoch``, ``step``, ``task`` and every
    metric the manifest records. Field data: ``checkpoint_set`` (absolute folder), ``task``,
    ``n_params``, ``variants``.
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=0, nOutputPorts=1, outputType="vtkTable")
        self._filename = ""
        self._info = None

    def SetFileName(self, name):
        if name != self._filename:
            self._filename = name or ""
            self._info = None
            self.Modified()

    def GetFileName(self):
        return self._filename

    def _set_info(self):
        if not self._filename:
            return None
        key = self._stat_key()
        if self._info is None or self._info[0] != key:
            cs = open_checkpoint_set(self._filename)
            try:
                n = cs.layout().n_params
            except Exception:  # noqa: BLE001 - a broken first file shows in RequestData
                n = -1
            self._info = (key, cs, n)
        return self._info

    def _stat_key(self):
        p = Path(self._filename)
        m = p / "manifest.json" if p.is_dir() else p
        if p.is_dir() and not m.exists():  # indexed in memory: the files themselves are the key
            return (str(p.resolve()), None, _tree_stamp(p))
        st = m.stat() if m.exists() else None
        return (str(p.resolve()), st.st_mtime_ns if st else None)

    def GetVariants(self):
        info = self._set_info()
        return info[1].runs if info else []

    def GetParameterCount(self):
        info = self._set_info()
        return int(info[2]) if info else 0

    def GetNumberOfCheckpoints(self):
        info = self._set_info()
        return len(info[1]) if info else 0

    def execute(self, inInfo, outInfo):
        if not self._filename:
            raise GlobscopeError("no checkpoint set given (FileName is empty)")
        _, cs, n_params = self._set_info()
        runs = cs.runs
        cks = cs.checkpoints
        cols = {
            "file": np.array([c.file for c in cks], dtype=object),
            "run": np.array([c.run for c in cks], dtype=object),
            "variant": np.array([c.variant or c.run for c in cks], dtype=object),
            "variant_id": np.array([runs.index(c.run) for c in cks], dtype=np.int32),
            "epoch": np.array([c.position for c in cks], dtype=np.int64),
            "step": np.array([c.step if c.step is not None else -1 for c in cks], dtype=np.int64),
            "task": np.array([c.task or cs.task or "" for c in cks], dtype=object),
        }
        for m in sorted({k for c in cks for k in c.metrics}):
            cols[m] = np.array([c.metrics.get(m, np.nan) for c in cks], dtype=np.float64)
        out = vtkTable.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(vc.table(cols, field_data={"n_params": np.array([n_params], dtype=np.int64),
                                                   "variants": np.array(runs, dtype=object)}))
        vc.set_field_strings(out, checkpoint_set=str(cs.root.resolve()), task=cs.task or "")


# -- manifold ------------------------------------------------------------------------------------
def model_point_arrays(cs, Z, errors) -> tuple[dict, list]:
    """The core's model-point arrays and polylines (:func:`globscope.bundle.model_point_arrays`)
    plus ``loss`` (the recorded evaluation loss, when the manifest has it)."""
    from globscope.bundle import model_point_arrays as core_arrays

    arrays, lines = core_arrays(cs, Z, errors)
    if "eval_loss" in arrays:
        arrays["loss"] = arrays["eval_loss"]
    return arrays, lines


def fit_or_load_manifold(cs, task_name, method, dim, seed, epochs, manifold_file="", progress=None):
    """A manifold for the checkpoint set: loaded from ``manifold_file`` when given, else fitted
    (or taken from the cache of earlier fits with the same inputs and settings) and saved.

    Returns (manifold, path of its file, W).
    """
    from globscope.manifolds import load_manifold, make_manifold
    from globscope.tasks import get_task

    task = get_task(task_name)
    W, _ = cs.load_weights(task.layout)
    if progress:
        progress(0.1)
    if manifold_file:
        path = Path(manifold_file).expanduser().resolve()
        return load_manifold(path), path, W
    params = {"seed": int(seed)}
    if method == "autoencoder" and epochs and int(epochs) > 0:
        params["epochs"] = int(epochs)
    key = _hash(["manifold", cs.fingerprint(), task_name, method, int(dim), sorted(params.items())])
    path = cache_dir() / f"manifold-{key}.pt"
    if path.is_file():
        return load_manifold(path), path, W
    man = make_manifold(method, int(dim), **params)
    man.fit(W, progress=(lambda f: progress(0.1 + 0.8 * f)) if progress else None)
    man.meta_ = {"task": task_name, "checkpoint_set": str(cs.root.resolve()), "layout": task.layout.to_dict()}
    man.save(path)
    return man, path, W


class ManifoldFilter(GlobscopeAlgorithm):
    """Input: a checkpoint-set table (``CheckpointSetReader``). Output: the encoded models as
    ``vtkPolyData`` (latent coordinates; one vertex per model and one polyline per run).

    Field data ``manifold_file``, ``checkpoint_set``, ``task``, ``latent_dim`` tell downstream
    filters (Loss Landscape, Project Models) which manifold to use.
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=1, inputType="vtkTable",
                                    outputType="vtkPolyData")
        self.method, self.dim, self.seed, self.epochs = "autoencoder", 2, 0, 0
        self.task, self.manifold_file = "", ""

    def _set(self, attr, value):
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            self.Modified()

    def SetMethod(self, v):
        v = METHODS[v] if isinstance(v, int) else str(v)
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}")
        self._set("method", v)

    def SetLatentDimension(self, v): self._set("dim", int(v))

    def latent_dim(self) -> int:
        """The output's latent dimension, known before execution (for downstream extents)."""
        if self.manifold_file:
            from globscope.manifolds import load_manifold

            return load_manifold(self.manifold_file).dim
        return self.dim
    def SetSeed(self, v): self._set("seed", int(v))
    def SetEpochs(self, v): self._set("epochs", int(v))
    def SetTask(self, v): self._set("task", str(v or ""))
    def SetManifoldFile(self, v): self._set("manifold_file", str(v or ""))

    def execute(self, inInfo, outInfo):
        from globscope.compare import per_model_error

        tab = vtkTable.GetData(inInfo[0].GetInformationObject(0))
        cs_path = vc.field_string(tab, "checkpoint_set")
        if not cs_path:
            raise GlobscopeError("the input is not a Globscope checkpoint set (no checkpoint_set field data)")
        cs = open_checkpoint_set(cs_path)
        task = self.task or vc.field_string(tab, "task") or (cs.tasks[0] if cs.tasks else "")
        if not task and self.manifold_file:
            from globscope.manifolds import load_manifold

            task = (load_manifold(self.manifold_file).meta_ or {}).get("task", "")
        if not task:
            raise GlobscopeError("the checkpoint set names no task: set the Task property")
        if self.manifold_file:
            # a given file decides everything: its content (stamp), not the fit-only settings
            key = ("manifold", cs.fingerprint(), task) + _file_stamp(self.manifold_file)
        else:
            key = ("manifold", cs.fingerprint(), task, self.method, self.dim, self.seed, self.epochs)

        def compute():
            man, path, W = fit_or_load_manifold(cs, task, self.method, self.dim, self.seed, self.epochs,
                                                self.manifold_file, progress=self._progress(0.0, 0.9))
            Z = man.transform(W)
            err = per_model_error(man, W)
            arrays, lines = model_point_arrays(cs, Z, err)
            pd = vc.poly_data(Z[:, :3], arrays, lines=lines,
                              field_data={"runs": np.array(cs.runs, dtype=object),
                                          "latent_dim": np.array([man.dim], dtype=np.int32)})
            vc.set_field_strings(pd, manifold_file=str(path), checkpoint_set=str(cs.root.resolve()), task=task,
                                 method=man.method)
            return pd

        out = vtkPolyData.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(self._cached(key, compute))


def _manifold_of(ds):
    path = vc.field_string(ds, "manifold_file")
    if not path:
        raise GlobscopeError("the input carries no manifold (connect the output of the Manifold filter)")
    if not Path(path).is_file():
        raise GlobscopeError(f"{path}: the input's manifold file is gone (re-run the Manifold filter)")
    return Path(path)


# -- loss landscape --------------------------------------------------------------------------------
class LossLandscape(GlobscopeAlgorithm):
    """Input: the Manifold filter's output. Output: ``vtkImageData`` over the latent grid with point
    arrays ``loss``, ``log_loss``, ``accuracy``, ``distance`` (latent dimension 2 or 3).

    The core writes ``landscape.vti`` into a cache folder keyed by the manifold file and the
    settings; chunks already evaluated there are reused (also across sessions).
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=1, inputType="vtkPolyData",
                                    outputType="vtkImageData")
        self.resolution, self.margin, self.task, self.device, self.bn = 32, 0.1, "", "auto", "recompute"
        self.summary = None

    def _set(self, attr, value):
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            self.Modified()

    def _latent_dim(self, inInfo) -> int:
        """The latent dimension before any data exists: asked from the upstream Manifold filter,
        else read from the last input, else 2."""
        from vtkmodules.vtkCommonExecutionModel import vtkExecutive

        info = inInfo[0].GetInformationObject(0)
        try:
            algo = info.Get(vtkExecutive.PRODUCER()).GetAlgorithm()
            if hasattr(algo, "latent_dim"):
                return int(algo.latent_dim())
        except Exception:  # noqa: BLE001 - fall back to the data
            pass
        data = info.Get(vtkDataObject.DATA_OBJECT())
        arr = data.GetFieldData().GetArray("latent_dim") if data is not None else None
        return int(arr.GetValue(0)) if arr is not None and arr.GetNumberOfTuples() else 2

    def RequestInformation(self, request, inInfo, outInfo):
        # image outputs need their extent before RequestData (else a second consumer's request
        # finds an empty update extent and the executive empties the output)
        dim = self._latent_dim(inInfo)
        r = self.resolution - 1
        ext = [0, r, 0, r, 0, r if dim == 3 else 0]
        outInfo.GetInformationObject(0).Set(vtkStreamingDemandDrivenPipeline.WHOLE_EXTENT(), ext, 6)
        return 1

    def SetResolution(self, v): self._set("resolution", int(v))
    def SetMargin(self, v): self._set("margin", float(v))
    def SetTask(self, v): self._set("task", str(v or ""))

    def SetDevice(self, v):
        self._set("device", DEVICES[v] if isinstance(v, int) else str(v))

    def SetBatchNormMode(self, v):
        self._set("bn", BN_MODES[v] if isinstance(v, int) else str(v))

    def execute(self, inInfo, outInfo):
        from vtkmodules.vtkIOXML import vtkXMLImageDataReader

        from globscope.fileio import hash_file
        from globscope.landscape import run_landscape

        src = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        mpath = _manifold_of(src)
        st = mpath.stat()
        key = ("landscape", str(mpath), st.st_mtime_ns, st.st_size, self.resolution, self.margin, self.task,
               self.device, self.bn)

        def compute():
            folder = cache_dir() / f"landscape-{_hash([hash_file(mpath)] + list(key[4:]))}"
            summary = run_landscape(mpath, folder, task=self.task or None, resolution=self.resolution,
                                    margin=self.margin, device=None if self.device == "auto" else self.device,
                                    bn=self.bn, progress=self._progress(0.0, 0.95),
                                    should_abort=self._should_abort)
            vti = folder / "landscape.vti"
            if not vti.is_file():
                raise GlobscopeError(f"the landscape of a {summary.get('latent_dim')}-D manifold is not one image "
                                 "(only latent dimensions 2 and 3 are shown in ParaView)")
            r = vtkXMLImageDataReader()
            r.SetFileName(str(vti))
            r.Update()
            img = vtkImageData()
            img.ShallowCopy(r.GetOutput())
            vc.set_field_strings(img, manifold_file=str(mpath), landscape_folder=str(folder),
                                 task=summary.get("task", ""))
            self.summary = summary
            return img

        img = self._cached(key, compute)
        out = vtkImageData.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(img)


# -- topology --------------------------------------------------------------------------------------
class _TopologyFilter(GlobscopeAlgorithm):
    """Input: ``vtkImageData`` with a point scalar array (``SetInputArrayToProcess(0, …)``,
    default ``log_loss`` when present)."""

    def __init__(self, nOutputPorts=1, outputType="vtkUnstructuredGrid"):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=nOutputPorts, inputType="vtkImageData",
                                    outputType=outputType)
        self.persistence, self.absolute = 0.0, False

    def SetPersistenceThreshold(self, v):
        if float(v) != self.persistence:
            self.persistence = float(v)
            self.Modified()

    def SetThresholdIsAbsolute(self, v):
        if bool(v) != self.absolute:
            self.absolute = bool(v)
            self.Modified()

    def _field(self, inInfo):
        img = vtkImageData.GetData(inInfo[0].GetInformationObject(0))
        arr = None
        ai = self.GetInputArrayInformation(0)
        if ai is not None and ai.Has(vtkDataObject.FIELD_NAME()):
            name = ai.Get(vtkDataObject.FIELD_NAME())
            arr = img.GetPointData().GetArray(name)
            if arr is None and name:
                raise GlobscopeError(f"the input image has no point array {name!r}")
        if arr is None:
            pd = img.GetPointData()
            for name in ("log_loss", "loss"):
                if pd.GetArray(name) is not None:
                    arr = pd.GetArray(name)
                    break
            else:
                arr = pd.GetScalars() or (pd.GetArray(0) if pd.GetNumberOfArrays() else None)
        if arr is None:
            raise GlobscopeError("the input image has no point scalar array")
        if arr.GetNumberOfComponents() != 1:
            raise GlobscopeError(f"array {arr.GetName()!r} has {arr.GetNumberOfComponents()} components, need 1")
        origin, spacing, dims = vc.image_geometry(img)
        F = vc.from_vtk_array(arr).astype(np.float64).reshape(dims, order="F")
        return img, arr, F

    def _analyze(self, inInfo, persistence):
        from globscope.topology import analyze

        img, arr, F = self._field(inInfo)
        key = (type(self).__name__, arr.GetName(), arr.GetMTime(), img.GetMTime(), F.shape, persistence,
               self.absolute)
        res = self._cached(key, lambda: analyze(F, persistence, self.absolute, progress=self._progress(0.0, 0.9),
                                                should_abort=self._should_abort))
        return img, arr, F, res


def _grid_coords(img, vertex_ids) -> np.ndarray:
    """Positions (n, 3) of image vertices given by VTK point id (``img.GetPoint``, vectorised)."""
    dims = img.GetDimensions()
    idx = np.stack(np.unravel_index(np.asarray(vertex_ids, dtype=np.int64), dims, order="F"), 1)
    start = np.asarray(img.GetExtent()[::2])
    return np.asarray(img.GetOrigin()) + (idx + start) * np.asarray(img.GetSpacing())


def diagram(pairs, crit_types_birth=0, death_types=None):
    """TTK's persistence diagram layout: per pair two points (birth, birth) and (birth, death),
    one line cell; point arrays ``ttkVertexScalarField``, ``CriticalType``, ``Birth``, ``Death``;
    cell arrays ``PairIdentifier``, ``PairType``, ``Persistence``, ``IsFinite``; the diagonal is
    the last cell (``PairIdentifier`` = ``PairType`` = -1)."""
    n = len(pairs)
    b, d = pairs.birth.astype(np.float64), pairs.death.astype(np.float64)
    P = np.zeros((2 * n + 2, 3))
    P[0:2 * n:2, 0], P[0:2 * n:2, 1] = b, b
    P[1:2 * n:2, 0], P[1:2 * n:2, 1] = b, d
    fin = np.concatenate([b, d[np.isfinite(d)]]) if n else np.zeros(1)
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    P[2 * n] = (lo, lo, 0)
    P[2 * n + 1] = (hi, hi, 0)
    verts = np.empty(2 * n + 2, dtype=np.int64)
    verts[0:2 * n:2], verts[1:2 * n:2] = pairs.birth_vertex, pairs.death_vertex
    verts[2 * n:] = -1
    ctype = np.empty(2 * n + 2, dtype=np.int32)
    ctype[0:2 * n:2] = 0
    ctype[1:2 * n:2] = np.where(pairs.is_finite, 1, 3) if death_types is None else death_types
    ctype[2 * n:] = -1
    birth_pt = np.repeat(b, 2) if n else np.zeros(0)
    death_pt = np.repeat(d, 2) if n else np.zeros(0)
    cells = np.array([[2 * i, 2 * i + 1] for i in range(n)] + [[2 * n, 2 * n + 1]], dtype=np.int64)
    return vc.unstructured_grid(
        P, cells, VTK_LINE,
        point_data={"ttkVertexScalarField": verts, "CriticalType": ctype,
                    "Birth": np.concatenate([birth_pt, [lo, hi]]), "Death": np.concatenate([death_pt, [lo, hi]])},
        cell_data={"PairIdentifier": np.concatenate([np.arange(n), [-1]]).astype(np.int32),
                   "PairType": np.concatenate([pairs.pair_type, [-1]]).astype(np.int32),
                   "Persistence": np.concatenate([pairs.persistence, [0.0]]).astype(np.float64),
                   "IsFinite": np.concatenate([pairs.is_finite.astype(np.int32), [1]]).astype(np.int32)})


class PersistenceDiagram(_TopologyFilter):
    """Minimum-saddle persistence diagram of the input field, in TTK's layout (see :func:`diagram`)."""

    def execute(self, inInfo, outInfo):
        _, _, _, res = self._analyze(inInfo, 0.0)
        out = vtkDataObject.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(diagram(res.pairs))


class TopologicalSimplification(_TopologyFilter):
    """TTK's ``TopologicalSimplificationByPersistence`` (Minimum-Saddle): the input image with the
    processed array replaced by the simplified field, plus TTK's ``Order`` array."""

    def __init__(self):
        _TopologyFilter.__init__(self, outputType="vtkImageData")
        self.persistence = 0.05

    def execute(self, inInfo, outInfo):
        img, arr, F, res = self._analyze(inInfo, self.persistence)
        out = vtkImageData.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(img)
        name = arr.GetName()
        simplified = res.simplification.values.astype(vc.from_vtk_array(arr).dtype)
        out.GetPointData().RemoveArray(name)
        out.GetPointData().AddArray(vc.to_vtk_array(name, simplified))
        out.GetPointData().SetActiveScalars(name)
        out.GetPointData().RemoveArray("Order")
        out.GetPointData().AddArray(vc.to_vtk_array("Order", res.simplification.order.astype(np.int64)))
        vc.add_arrays(out.GetFieldData(), {"PersistenceThreshold": np.array([res.simplification.threshold]),
                                           "RemovedPairs": np.array([len(res.simplification.removed_minima)])})


class MergeTree(_TopologyFilter):
    """Join tree of the input field in TTK FTM's layout (``TreeType`` = Join Tree):

    - port 0, skeleton nodes: vertices with ``NodeId``, ``VertexId``, ``Scalar``, ``CriticalType``;
    - port 1, skeleton arcs: lines node to node with ``upNodeId``, ``downNodeId``,
      ``SegmentationId``, ``RegionSize``, ``RegionType``;
    - port 2, segmentation: the input image with ``SegmentationId`` and ``RegionType``.
    """

    def __init__(self):
        _TopologyFilter.__init__(self, nOutputPorts=3)

    def FillOutputPortInformation(self, port, info):
        info.Set(vtkDataObject.DATA_TYPE_NAME(), "vtkImageData" if port == 2 else "vtkUnstructuredGrid")
        return 1

    def execute(self, inInfo, outInfo):
        img, arr, F, res = self._analyze(inInfo, 0.0)
        t = res.join_tree
        nodes_xyz = _grid_coords(img, t.node_vertex)
        node_arrays = t.node_arrays()
        nodes = vc.unstructured_grid(nodes_xyz, np.arange(t.n_nodes)[:, None], VTK_VERTEX, point_data=node_arrays)
        rt = t.region_type
        arcs = vc.unstructured_grid(
            nodes_xyz, np.stack([t.arc_down, t.arc_up], axis=1), VTK_LINE,
            point_data={k: node_arrays[k] for k in ("NodeId", "Scalar")}, cell_data=t.arc_arrays())
        seg = vtkImageData()
        seg.ShallowCopy(img)
        seg_ids = t.segmentation.astype(np.int32)
        region = np.where(seg_ids >= 0, rt[seg_ids.clip(0)], -1).astype(np.int32)
        vc.add_arrays(seg.GetPointData(), {"SegmentationId": seg_ids, "RegionType": region})
        for port, obj in enumerate((nodes, arcs, seg)):
            vtkDataObject.GetData(outInfo.GetInformationObject(port)).ShallowCopy(obj)


# -- models on an existing manifold ---------------------------------------------------------------
def sample_image(img, points, names) -> dict:
    """Point arrays ``names`` of ``img`` interpolated (multilinearly) at ``points`` (N, 3); NaN outside."""
    from vtkmodules.vtkFiltersCore import vtkProbeFilter

    probe = vtkProbeFilter()
    probe.SetInputData(vc.poly_data(points, verts=False))
    probe.SetSourceData(img)
    probe.Update()
    o = probe.GetOutput()
    valid = vc.from_vtk_array(o.GetPointData().GetArray("vtkValidPointMask")).astype(bool)
    res = {}
    for n in names:
        a = o.GetPointData().GetArray(n)
        if a is not None:
            v = vc.from_vtk_array(a).astype(np.float64)
            v[~valid] = np.nan
            res[n] = v
    return res


class ProjectModels(GlobscopeAlgorithm):
    """Encode another checkpoint set (a curve, re-basined models) onto an existing manifold.

    Port 0: the Manifold filter's output (or anything carrying its ``manifold_file``), e.g. a
    landscape. Port 1 (optional): a landscape image whose fields are sampled at the new points
    (``field_loss``, ``field_log_loss``, ``field_accuracy``). Output: ``vtkPolyData`` like the
    Manifold filter's.
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=2, nOutputPorts=1, outputType="vtkPolyData")
        self.checkpoint_set = ""

    def FillInputPortInformation(self, port, info):
        info.Set(vtkAlgorithm.INPUT_REQUIRED_DATA_TYPE(), "vtkDataObject")
        if port == 1:
            info.Set(vtkAlgorithm.INPUT_IS_OPTIONAL(), 1)
        return 1

    def SetCheckpointSet(self, v):
        if str(v or "") != self.checkpoint_set:
            self.checkpoint_set = str(v or "")
            self.Modified()

    def execute(self, inInfo, outInfo):
        from globscope.compare import per_model_error
        from globscope.manifolds import load_manifold
        from globscope.tasks import get_task

        src = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        mpath = _manifold_of(src)
        land = None
        if inInfo[1].GetNumberOfInformationObjects():
            land = vtkDataObject.GetData(inInfo[1].GetInformationObject(0))
        if not self.checkpoint_set:
            raise GlobscopeError("no checkpoint set to project (CheckpointSet is empty)")
        cs = open_checkpoint_set(self.checkpoint_set)
        key = ("project", str(mpath), mpath.stat().st_mtime_ns, cs.fingerprint())

        def compute():
            man = load_manifold(mpath)
            task = (man.meta_ or {}).get("task") or (cs.tasks[0] if cs.tasks else None)
            if not task:
                raise GlobscopeError("neither the manifold nor the checkpoint set names a task")
            W, _ = cs.load_weights(get_task(task).layout, progress=self._progress(0.0, 0.6))
            Z = man.transform(W)
            arrays, lines = model_point_arrays(cs, Z, per_model_error(man, W))
            return Z, arrays, lines, task

        Z, arrays, lines, task = self._cached(key, compute)
        arrays = dict(arrays)
        if land is not None and isinstance(land, vtkImageData):
            for k, v in sample_image(land, vc.points3(Z), ["loss", "log_loss", "accuracy"]).items():
                arrays[f"field_{k}"] = v
        pd = vc.poly_data(Z[:, :3], arrays, lines=lines, field_data={"runs": np.array(cs.runs, dtype=object)})
        vc.set_field_strings(pd, manifold_file=str(mpath), checkpoint_set=str(cs.root.resolve()), task=task)
        vtkPolyData.GetData(outInfo.GetInformationObject(0)).ShallowCopy(pd)


class Basins(GlobscopeAlgorithm):
    """Label model points with the basin they fall into.

    Port 0: model points (``vtkPointSet``). Port 1: a segmentation image with ``SegmentationId``
    (port 2 of the Merge Tree filter, ours or TTK's). Output: the points with ``SegmentationId``
    and ``RegionType`` of the grid vertex nearest to each point (-1 outside the grid).
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=2, nOutputPorts=1, outputType="vtkPolyData")

    def FillInputPortInformation(self, port, info):
        info.Set(vtkAlgorithm.INPUT_REQUIRED_DATA_TYPE(), "vtkPointSet" if port == 0 else "vtkImageData")
        return 1

    def execute(self, inInfo, outInfo):
        pts = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        seg = vtkImageData.GetData(inInfo[1].GetInformationObject(0))
        if seg.GetPointData().GetArray("SegmentationId") is None:
            names = [seg.GetPointData().GetArrayName(i) for i in range(seg.GetPointData().GetNumberOfArrays())]
            raise GlobscopeError(f"port 1 has no SegmentationId array (connect a merge tree's segmentation); "
                                 f"it has {names}")
        from globscope.landscape import LatentGrid

        d = 3 if seg.GetDimensions()[2] > 1 else 2
        grid = LatentGrid(seg.GetOrigin()[:d], seg.GetSpacing()[:d], seg.GetDimensions()[:d])
        vid, inside = grid.nearest_vertex(vc.point_coords(pts)[:, :d])
        out = vtkDataObject.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(pts)
        for name in ("SegmentationId", "RegionType"):
            a = seg.GetPointData().GetArray(name)
            if a is None:
                continue
            v = vc.from_vtk_array(a).astype(np.int32)[vid]
            v[~inside] = -1
            out.GetPointData().RemoveArray(name)
            out.GetPointData().AddArray(vc.to_vtk_array(name, v))
        out.GetPointData().AddArray(vc.to_vtk_array("GridVertexId", np.where(inside, vid, -1)))


__all__ = ["CheckpointSetReader", "ManifoldFilter", "LossLandscape", "PersistenceDiagram",
           "TopologicalSimplification", "MergeTree", "ProjectModels", "Basins", "cache_dir", "diagram",
           "sample_image", "open_checkpoint_set", "fit_or_load_manifold", "model_point_arrays"]
