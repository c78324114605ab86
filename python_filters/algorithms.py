"""Globscope's VTK algorithms (``VTKPythonAlgorithmBase``), undecorated: usable from plain
``vtkmodules`` and wrapped by the thin ParaView proxies in :mod:`python_filters.proxies`.

Each algorithm is a thin translation of a core stage (:mod:`globscope.stages`): it holds that
stage's settings object (defaults from :mod:`globscope.settings`, changed by the proxy's setters),
passes ``progress`` / ``should_abort`` callbacks (``UpdateProgress``, ``CheckAbort``), and keeps its
last result under a key of everything that determines it, so that re-executing with unchanged
inputs and settings (ParaView does that when an unrelated property changes) reuses the result.

Topology outputs follow TTK's port layout, array names and codes (:mod:`globscope.names`), so
downstream filters and states do not care which engine ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path

import numpy as np
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonCore import vtkOutputWindow
from vtkmodules.vtkCommonDataModel import VTK_LINE, VTK_VERTEX, vtkDataObject, vtkImageData, vtkPolyData, vtkTable
from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm, vtkStreamingDemandDrivenPipeline

from globscope import names as N
from globscope import stages
from globscope.environment import cache_dir
from globscope.environment import get as env_get
from globscope.errors import Aborted, GlobscopeError
from globscope.settings import FitSettings, LandscapeSettings, TopologySettings
from python_filters import vtkconv as vc

log = logging.getLogger("globscope.filters")


def _hash(obj) -> str:
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def _error(msg: str) -> None:
    vtkOutputWindow.GetInstance().DisplayErrorText(f"Globscope: {msg}\n")


class GlobscopeAlgorithm(VTKPythonAlgorithmBase):
    """Shared plumbing: progress/abort callbacks, result cache, settings, error reporting."""

    def __init__(self, **kw):
        VTKPythonAlgorithmBase.__init__(self, **kw)
        self._cache_key = None
        self._cache = None
        self._reported = None  # the last error shown: (modification time, message)
        self.n_computed = 0  # how many times the expensive part ran (tests read it)

    def _set(self, attr, value):
        """Set an attribute, marking the algorithm modified only when the value changes."""
        if getattr(self, attr) != value:
            setattr(self, attr, value)
            self.Modified()

    def _change(self, **changes):
        """Change the algorithm's ``settings`` (a frozen settings object, which checks them)."""
        self._set("settings", dataclasses.replace(self.settings, **changes))

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
        except GlobscopeError as e:  # the user's mistake: its message only, once per change of the filter
            report = (self.GetMTime(), str(e))  # (ParaView asks each output port: a 3-port filter fails 3 times)
            if report != self._reported:
                _error(f"{type(self).__name__}: {e}")
                self._reported = report
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
def _tree_stamp(root) -> tuple:
    """(relative path, size, mtime) of every checkpoint-like file under ``root``: changes when
    files are added, removed or rewritten (a folder without a manifest is indexed anew then)."""
    from globscope.checkpoints import SUFFIXES

    root = Path(root)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in SUFFIXES and p.is_file():
            st = p.stat()
            out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


class CheckpointSetReader(GlobscopeAlgorithm):
    """Reads a checkpoint set (:func:`globscope.stages.open_set`): one table row per checkpoint.

    Columns: ``file``, ``run``, ``variant``, ``variant_id``, ``epoch``, ``step``, ``task`` and every
    metric the manifest records. Field data: ``checkpoint_set`` (absolute folder), ``task``,
    ``n_params``, ``variants``.
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=0, nOutputPorts=1, outputType="vtkTable")
        self._filename = ""
        self._info = None
        self._info_error = None

    def SetFileName(self, name):
        if name != self._filename:
            self._filename = name or ""
            self._info = None
            self.Modified()

    def GetFileName(self):
        return self._filename

    def _set_info(self):
        """(key, checkpoint set, parameter count), or None (no file name, or a set that cannot be
        opened: ``_info_error`` holds why, which RequestData says once; the information properties,
        which ParaView asks for many times, stay empty rather than raising)."""
        if not self._filename:
            return None
        try:
            key = self._stat_key()
            if self._info is None or self._info[0] != key:
                self._info = None
                cs = stages.open_set(self._filename)
                try:
                    n = cs.layout().n_params
                except GlobscopeError:  # a broken first file shows in RequestData
                    n = -1
                self._info = (key, cs, n)
        except GlobscopeError as e:
            self._info_error = e
            return None
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
        info = self._set_info()
        if info is None:
            raise self._info_error
        _, cs, n_params = info
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
def model_points(cs, Z, errors, **field_strings) -> vtkPolyData:
    """The encoded models as ``vtkPolyData``: :func:`globscope.bundle.model_point_arrays` on points
    at the latent coordinates (the first three), one polyline per run; field data ``runs``,
    ``latent_dim`` and the given strings."""
    from globscope.bundle import model_point_arrays

    arrays, lines = model_point_arrays(cs, Z, errors)
    pd = vc.poly_data(Z[:, :3], arrays, lines=lines,
                      field_data={"runs": np.array(cs.runs, dtype=object),
                                  "latent_dim": np.array([Z.shape[1]], dtype=np.int32)})
    vc.set_field_strings(pd, **field_strings)
    return pd


def fitted_manifold(models, settings: FitSettings, progress=None):
    """A manifold of the models fitted with ``settings`` into Globscope's cache (a fit with the same
    inputs and settings is loaded instead). Returns (manifold, path of its file).

    With ``GLOBSCOPE_PYTHON`` (set when Globscope's launcher starts ParaView) the fit runs in a
    process of its own (:mod:`globscope.fit_process`), as fast as ``globscope fit``."""
    from globscope.fit_process import fit_in_process
    from globscope.manifolds import FORMAT_VERSION, load_manifold

    key = _hash(["manifold", FORMAT_VERSION, models.cs.fingerprint(), models.task_name, settings.to_dict()])
    path = cache_dir() / f"manifold-{key}.pt"
    if path.is_file():
        return load_manifold(path), path
    python = env_get("GLOBSCOPE_PYTHON")
    if not python:
        return stages.fit(models, settings, out=path, progress=progress), path
    fit_in_process(python, models.cs.root, settings, path, task=models.task_name, prefix=models.cs.prefix,
                   progress=progress)
    return load_manifold(path), path


class ManifoldFilter(GlobscopeAlgorithm):
    """Input: a checkpoint-set table (``CheckpointSetReader``). Output: the encoded models as
    ``vtkPolyData`` (latent coordinates; one vertex per model and one polyline per run).

    Field data ``manifold_file``, ``checkpoint_set``, ``task``, ``latent_dim`` tell downstream
    filters (Loss Landscape, Project Models) which manifold to use.
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=1, inputType="vtkTable",
                                    outputType="vtkPolyData")
        self.settings = FitSettings()
        self.task, self.manifold_file = "", ""

    def SetMethod(self, v):
        self._change(method=N.MANIFOLD_METHODS.name(v))

    def SetLatentDimension(self, v):
        self._change(dim=int(v))

    def SetSeed(self, v):
        self._change(seed=int(v))

    def SetEpochs(self, v):
        self._change(epochs=int(v) or None)  # 0: the method's default

    def SetTask(self, v):
        self._set("task", str(v or ""))

    def SetManifoldFile(self, v):
        self._set("manifold_file", str(v or ""))

    def latent_dim(self) -> int:
        """The output's latent dimension, known before execution (for downstream extents)."""
        if self.manifold_file:
            from globscope.manifolds import read_manifold_info

            return read_manifold_info(self.manifold_file).dim
        return self.settings.dim

    def execute(self, inInfo, outInfo):
        tab = vtkTable.GetData(inInfo[0].GetInformationObject(0))
        cs_path = vc.field_string(tab, "checkpoint_set")
        if not cs_path:
            raise GlobscopeError("the input is not a Globscope checkpoint set (no checkpoint_set field data)")
        cs = stages.open_set(cs_path)
        task = self.task or None
        if self.manifold_file:
            # a given file decides everything: its content (stamp), not the fit-only settings
            key = ("manifold", cs.fingerprint(), task) + _file_stamp(self.manifold_file)
        else:
            key = ("manifold", cs.fingerprint(), task, self.settings)

        def compute():
            from globscope.manifolds import load_manifold

            if self.manifold_file:
                path = Path(self.manifold_file).expanduser().resolve()
                man = load_manifold(path)
                models = stages.models_for(man, cs, task, path, progress=self._progress(0.0, 0.9))
            else:
                models = stages.load_models(cs, task, progress=self._progress(0.0, 0.1))
                man, path = fitted_manifold(models, self.settings, progress=self._progress(0.1, 0.9))
            Z, errors = stages.project(man, models)
            return model_points(cs, Z, errors, manifold_file=str(path), checkpoint_set=str(cs.root.resolve()),
                                task=models.task_name or "", method=man.method)

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

    The landscape stage writes ``landscape.vti`` into a cache folder keyed by the manifold file and
    the settings; chunks already evaluated there are reused (also across sessions).
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=1, inputType="vtkPolyData",
                                    outputType="vtkImageData")
        self.settings = LandscapeSettings()
        self.task = ""
        self.summary = None

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
        r = self.settings.resolution - 1
        ext = [0, r, 0, r, 0, r if dim == 3 else 0]
        outInfo.GetInformationObject(0).Set(vtkStreamingDemandDrivenPipeline.WHOLE_EXTENT(), ext, 6)
        return 1

    def SetResolution(self, v):
        self._change(resolution=int(v))

    def SetMargin(self, v):
        self._change(margin=float(v))

    def SetTask(self, v):
        self._set("task", str(v or ""))

    def SetDevice(self, v):
        self._change(device=N.DEVICES.name(v))

    def SetBatchNormMode(self, v):
        self._change(bn=N.BN_MODES.name(v))

    def execute(self, inInfo, outInfo):
        from vtkmodules.vtkIOXML import vtkXMLImageDataReader

        from globscope.fileio import hash_file
        from globscope.manifolds import read_manifold_info

        src = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        mpath = _manifold_of(src)
        key = ("landscape",) + _file_stamp(mpath) + (self.settings, self.task)
        dim = read_manifold_info(mpath).dim
        if dim not in N.IMAGE_DIMS:  # said before the work, not after
            raise GlobscopeError(f"{mpath}: the landscape of a {dim}-D manifold is not one image (ParaView shows "
                                 f"latent dimensions {' and '.join(map(str, N.IMAGE_DIMS))}; use `globscope "
                                 "landscape` for d = 4)")

        def compute():
            manifold_id = hash_file(mpath)
            folder = cache_dir() / f"landscape-{_hash([manifold_id, self.settings.to_dict(), self.task])}"
            summary = stages.landscape(mpath, folder, self.settings, task=self.task or None, manifold_id=manifold_id,
                                       progress=self._progress(0.0, 0.95), should_abort=self._should_abort)
            vti = folder / "landscape.vti"
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
    """Input: ``vtkImageData`` with a point scalar array (``SetInputArrayToProcess(0, …)``, default
    the topology settings' array, ``log_loss``, when present). Vertices are ordered by TTK's order
    array ``<array>_Order`` when the input has one (a simplified field), as TTK's filters do."""

    persistence = None  # the field as it is; the simplification filter has its own settings

    def __init__(self, nOutputPorts=1, outputType="vtkUnstructuredGrid"):
        GlobscopeAlgorithm.__init__(self, nInputPorts=1, nOutputPorts=nOutputPorts, inputType="vtkImageData",
                                    outputType=outputType)

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
            arr = pd.GetArray(TopologySettings().array) or pd.GetScalars() or \
                (pd.GetArray(0) if pd.GetNumberOfArrays() else None)
        if arr is None:
            raise GlobscopeError("the input image has no point scalar array")
        if arr.GetNumberOfComponents() != 1:
            raise GlobscopeError(f"array {arr.GetName()!r} has {arr.GetNumberOfComponents()} components, need 1")
        grid = vc.image_grid(img)
        return img, arr, grid, grid.to_field(vc.from_vtk_array(arr).astype(np.float64))

    def _analyze(self, inInfo, persistence, absolute=False):
        from globscope.topology import analyze

        img, arr, grid, F = self._field(inInfo)
        order_arr = img.GetPointData().GetArray(N.order_array(arr.GetName()))
        order = None if order_arr is None else vc.from_vtk_array(order_arr)
        key = (type(self).__name__, arr.GetName(), arr.GetMTime(), img.GetMTime(), F.shape, persistence, absolute,
               None if order_arr is None else order_arr.GetMTime())
        res = self._cached(key, lambda: analyze(F, persistence, absolute, order=order,
                                                progress=self._progress(0.0, 0.9), should_abort=self._should_abort))
        return img, arr, grid, res


def diagram(pairs, grid):
    """TTK's persistence-diagram layout (``ttkPersistenceDiagramUtils.cpp``, ``DiagramToVTU``,
    not embedded in the domain) of minimum-saddle pairs, the essential pair first.

    Per pair ``i`` two points, ``2i`` at (birth, birth, 0) and ``2i+1`` at (birth, death, 0), and one
    line cell. Point arrays: ``ttkVertexScalarField`` (the vertex), ``CriticalType`` (0 at the birth,
    1 at a saddle, 3 at the essential pair's maximum), ``Coordinates`` (the vertex's position in the
    domain). Cell arrays: ``PairIdentifier``, ``PairType`` (0), ``Persistence``, ``Birth``,
    ``IsFinite``. Then the diagonal: a line from point 0 to the birth point of the pair born last,
    ``PairIdentifier`` = ``PairType`` = -1, ``IsFinite`` 0, ``Birth`` 0 and ``Persistence`` twice
    the first pair's. There is no ``Death`` array: a point's y is its death.

    Parameters
    ----------
    pairs : globscope.topology.PersistencePairs
    grid : globscope.grid.Grid
        The field's grid (for ``Coordinates``).
    """
    n = len(pairs)
    b, d = pairs.birth.astype(np.float64), pairs.death.astype(np.float64)
    P = np.zeros((2 * n, 3))
    P[0::2, 0], P[0::2, 1] = b, b
    P[1::2, 0], P[1::2, 1] = b, d
    verts = np.empty(2 * n, dtype=np.int64)
    verts[0::2], verts[1::2] = pairs.birth_vertex, pairs.death_vertex
    ctype = np.empty(2 * n, dtype=np.int32)
    ctype[0::2] = N.CriticalType.MINIMUM
    ctype[1::2] = np.where(pairs.is_finite, N.CriticalType.SADDLE1, N.CriticalType.MAXIMUM)
    coords = vc.points3(grid.coordinates(verts)).astype(np.float32)
    last = int(np.argmax(b)) if n else 0
    cells = np.concatenate([np.arange(2 * n).reshape(n, 2), [[0, 2 * last]]]).astype(np.int64)
    first = float(pairs.persistence[0]) if n else 0.0
    return vc.unstructured_grid(
        P, cells, VTK_LINE,
        point_data={N.VERTEX_SCALAR_FIELD: verts, N.CRITICAL_TYPE: ctype, N.COORDINATES: coords},
        cell_data={N.PAIR_IDENTIFIER: np.append(np.arange(n), -1).astype(np.int32),
                   N.PAIR_TYPE: np.append(pairs.pair_type, -1).astype(np.int32),
                   N.PERSISTENCE: np.append(pairs.persistence, 2.0 * first).astype(np.float64),
                   N.BIRTH: np.append(b, 0.0),
                   N.IS_FINITE: np.append(pairs.is_finite, False).astype(np.uint8)})


class PersistenceDiagram(_TopologyFilter):
    """Minimum-saddle persistence diagram of the input field, in TTK's layout (see :func:`diagram`)."""

    def execute(self, inInfo, outInfo):
        _, _, grid, res = self._analyze(inInfo, self.persistence)
        out = vtkDataObject.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(diagram(res.pairs, grid))


class TopologicalSimplification(_TopologyFilter):
    """TTK's ``TopologicalSimplificationByPersistence`` (Minimum-Saddle): the input image with the
    processed array replaced by the simplified field, plus TTK's order array ``<array>_Order``."""

    def __init__(self):
        _TopologyFilter.__init__(self, outputType="vtkImageData")
        self.settings = TopologySettings()

    def SetPersistenceThreshold(self, v):
        self._change(persistence=float(v))

    def SetThresholdIsAbsolute(self, v):
        self._change(absolute=bool(v))

    def execute(self, inInfo, outInfo):
        img, arr, grid, res = self._analyze(inInfo, self.settings.persistence, self.settings.absolute)
        out = vtkImageData.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(img)
        name = arr.GetName()
        simplified = res.simplification.values.astype(vc.from_vtk_array(arr).dtype)
        out.GetPointData().RemoveArray(name)
        out.GetPointData().AddArray(vc.to_vtk_array(name, simplified))
        out.GetPointData().SetActiveScalars(name)
        out.GetPointData().RemoveArray(N.order_array(name))
        out.GetPointData().AddArray(vc.to_vtk_array(N.order_array(name), res.simplification.order.astype(np.int64)))
        vc.add_arrays(out.GetFieldData(), {"PersistenceThreshold": np.array([res.simplification.threshold]),
                                           "RemovedPairs": np.array([len(res.simplification.removed_minima)])})


class MergeTree(_TopologyFilter):
    """Join tree of the input field in TTK FTM's layout (``TreeType`` = Join Tree, no arc sampling):

    - port 0, skeleton nodes: vertices with ``NodeId``, ``Scalar``, ``VertexId``, ``CriticalType``,
      ``RegionSize``, ``RegionSpan``;
    - port 1, skeleton arcs: lines node to node; point arrays ``Scalar``, ``ttkMaskScalarField``,
      cell arrays ``SegmentationId``, ``upNodeId``, ``downNodeId``, ``RegionSize``, ``RegionSpan``;
    - port 2, segmentation: the input image with ``SegmentationId``, ``RegionSize``, ``RegionSpan``,
      ``RegionType``.

    ``Scalar`` holds the exact field values (TTK's are float32).
    """

    def __init__(self):
        _TopologyFilter.__init__(self, nOutputPorts=3)
        self.tree_type = N.TreeType.JOIN

    def FillOutputPortInformation(self, port, info):
        info.Set(vtkDataObject.DATA_TYPE_NAME(), "vtkImageData" if port == 2 else "vtkUnstructuredGrid")
        return 1

    def SetTreeType(self, v):
        self._set("tree_type", N.TreeType(int(v)))

    def execute(self, inInfo, outInfo):
        if self.tree_type != N.TreeType.JOIN:
            raise GlobscopeError(f"TreeType {self.tree_type.name.title()} Tree: Globscope's engine computes the join "
                                 "tree (the basins of a loss); native TTK's merge tree computes the others")
        img, arr, grid, res = self._analyze(inInfo, self.persistence)
        t = res.join_tree
        pos = grid.coordinates(t.node_vertex)
        nodes_xyz = vc.points3(pos)
        node_arrays = t.node_arrays(pos)
        nodes = vc.unstructured_grid(nodes_xyz, np.arange(t.n_nodes)[:, None], VTK_VERTEX, point_data=node_arrays)
        arcs = vc.unstructured_grid(
            nodes_xyz, np.stack([t.arc_down, t.arc_up], axis=1), VTK_LINE,
            point_data={N.SCALAR: node_arrays[N.SCALAR], N.MASK_SCALAR_FIELD: np.zeros(t.n_nodes, np.int8)},
            cell_data=t.arc_arrays(pos))
        seg = vtkImageData()
        seg.ShallowCopy(img)
        vc.add_arrays(seg.GetPointData(), t.segmentation_arrays(pos))
        for port, obj in enumerate((nodes, arcs, seg)):
            vtkDataObject.GetData(outInfo.GetInformationObject(port)).ShallowCopy(obj)


# -- models on an existing manifold ---------------------------------------------------------------
class ProjectModels(GlobscopeAlgorithm):
    """Encode another checkpoint set (a curve, re-basined models) onto an existing manifold.

    Port 0: the Manifold filter's output (or anything carrying its ``manifold_file``), e.g. a
    landscape. Port 1 (optional): a landscape image whose fields are interpolated at the new points
    (``field_loss``, ``field_log_loss``, ``field_accuracy``; NaN outside the image). Output:
    ``vtkPolyData`` like the Manifold filter's.
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
        self._set("checkpoint_set", str(v or ""))

    def execute(self, inInfo, outInfo):
        from globscope.manifolds import load_manifold

        src = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        mpath = _manifold_of(src)
        land = None
        if inInfo[1].GetNumberOfInformationObjects():
            land = vtkDataObject.GetData(inInfo[1].GetInformationObject(0))
        if not self.checkpoint_set:
            raise GlobscopeError("no checkpoint set to project (CheckpointSet is empty)")
        cs = stages.open_set(self.checkpoint_set)
        key = ("project",) + _file_stamp(mpath) + (cs.fingerprint(),)

        def compute():
            man = load_manifold(mpath)
            models = stages.models_for(man, cs, where=mpath, progress=self._progress(0.0, 0.6))
            return models, stages.project(man, models)

        models, (Z, errors) = self._cached(key, compute)
        pd = model_points(cs, Z, errors, manifold_file=str(mpath), checkpoint_set=str(cs.root.resolve()),
                          task=models.task_name or "")
        if isinstance(land, vtkImageData):
            grid = vc.image_grid(land)
            for name in (N.LOSS, N.LOG_LOSS, N.ACCURACY):
                if land.GetPointData().GetArray(name) is not None and Z.shape[1] == grid.dim:
                    values = grid.interpolate(vc.image_field(land, name), Z, outside="nan")
                    pd.GetPointData().AddArray(vc.to_vtk_array(f"field_{name}", values))
        vtkPolyData.GetData(outInfo.GetInformationObject(0)).ShallowCopy(pd)


class Basins(GlobscopeAlgorithm):
    """Label model points with the basin they fall into.

    Port 0: model points (``vtkPointSet``). Port 1: a segmentation image with ``SegmentationId``
    (port 2 of the Merge Tree filter, ours or TTK's). Output: the points with ``SegmentationId``
    and ``RegionType`` of the grid vertex nearest to each point, and its point id ``GridVertexId``
    (-1 outside the grid).
    """

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=2, nOutputPorts=1, outputType="vtkPolyData")

    def FillInputPortInformation(self, port, info):
        info.Set(vtkAlgorithm.INPUT_REQUIRED_DATA_TYPE(), "vtkPointSet" if port == 0 else "vtkImageData")
        return 1

    def execute(self, inInfo, outInfo):
        from globscope.topology.basins import basin_of_points

        pts = vtkDataObject.GetData(inInfo[0].GetInformationObject(0))
        seg = vtkImageData.GetData(inInfo[1].GetInformationObject(0))
        spd = seg.GetPointData()
        if spd.GetArray(N.SEGMENTATION_ID) is None:
            names = [spd.GetArrayName(i) for i in range(spd.GetNumberOfArrays())]
            raise GlobscopeError(f"port 1 has no {N.SEGMENTATION_ID} array (connect a merge tree's segmentation); "
                                 f"it has {names}")
        grid = vc.image_grid(seg)
        out = vtkDataObject.GetData(outInfo.GetInformationObject(0))
        out.ShallowCopy(pts)
        xyz = vc.point_coords(pts)
        vid = None
        for name in (N.SEGMENTATION_ID, N.REGION_TYPE):
            if spd.GetArray(name) is None:
                continue
            label, vid = basin_of_points(grid, vc.from_vtk_array(spd.GetArray(name)), xyz)
            out.GetPointData().RemoveArray(name)
            out.GetPointData().AddArray(vc.to_vtk_array(name, label.astype(np.int32)))
        out.GetPointData().AddArray(vc.to_vtk_array("GridVertexId", vid))


# -- validation ------------------------------------------------------------------------------------
class ValidationReader(GlobscopeAlgorithm):
    """Reads the validation's polylines and points (``validation/curves.vtp``, ``paths.vtp``,
    a re-basin folder's ``rebasin.vtp``). ``curves.vtp`` holds each curve once per manifold, each in
    that manifold's latent space: ``Manifold`` keeps one of them (empty: all), so that the curves
    drawn match the landscape they are drawn on."""

    def __init__(self):
        GlobscopeAlgorithm.__init__(self, nInputPorts=0, nOutputPorts=1, outputType="vtkPolyData")
        self.filename, self.manifold = "", ""

    def SetFileName(self, v):
        self._set("filename", str(v or ""))

    def SetManifold(self, v):
        self._set("manifold", str(v or ""))

    def execute(self, inInfo, outInfo):
        from globscope import vtkxml

        if not self.filename:
            raise GlobscopeError("no validation file given (FileName is empty)")
        st = Path(self.filename).stat() if Path(self.filename).is_file() else None
        key = (self.filename, st.st_mtime_ns if st else None, self.manifold)

        def compute():
            d = vtkxml.read(self.filename)
            if d.kind != "PolyData":
                raise GlobscopeError(f"{self.filename}: holds {d.kind}, not Globscope's validation polylines")
            conn, offs = (d.cells.get("Lines", {}).get(k, np.zeros(0, np.int64)) for k in ("connectivity", "offsets"))
            lines = np.split(conn, offs[:-1]) if len(offs) else []
            n_verts = len(d.cells.get("Verts", {}).get("offsets", []))
            cells = {k: v[n_verts:] for k, v in d.cell_data.items()}  # per line (vertex cells come first)
            keep = np.ones(len(lines), bool)
            if self.manifold and "manifold" in cells:
                keep = cells["manifold"] == self.manifold
                if not keep.any():
                    raise GlobscopeError(f"{self.filename}: no curves of manifold {self.manifold!r} (it has "
                                         f"{', '.join(sorted(set(cells['manifold'])))})")
            kept = [line for line, k in zip(lines, keep) if k]
            cell_data = None if n_verts else {k: v[keep] for k, v in cells.items()}  # lines only: per line
            return vc.poly_data(d.points, d.point_data, lines=kept, verts=n_verts > 0, cell_data=cell_data,
                                field_data=d.field_data)

        vtkPolyData.GetData(outInfo.GetInformationObject(0)).ShallowCopy(self._cached(key, compute))


__all__ = ["ValidationReader", "CheckpointSetReader", "ManifoldFilter", "LossLandscape", "PersistenceDiagram",
           "TopologicalSimplification", "MergeTree", "ProjectModels", "Basins", "diagram", "model_points",
           "fitted_manifold"]
