"""The driver: grid → decode in chunks → batched evaluation → resumable store → landscape.vti/.json.

``compute_landscape`` takes objects (a manifold, a task, the input models); the landscape stage
(:func:`globscope.stages.landscape`) calls it for a manifold file and the models its metadata names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from globscope.errors import Aborted, GlobscopeError
from globscope.fileio import hash_json, read_json, write_json
from globscope.grid import Grid
from globscope.landscape.batchnorm import has_statistics, stack_buffers
from globscope.landscape.distributed import Context, context
from globscope.landscape.evaluation import BatchedEvaluator, resolve_device
from globscope.landscape.grid import LatentGrid, nearest_model
from globscope.landscape.limits import estimate
from globscope.landscape.store import CACHE_DIR, FIELDS, ChunkStore
from globscope.names import ACCURACY, DISTANCE, FIELD_ARRAYS, LOG_LOSS, LOSS
from globscope.settings import LandscapeSettings
from globscope.tasks import Task

log = logging.getLogger(__name__)

FORMAT = "globscope-landscape"


def make_decoder(manifold, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """Latent points (B, d) -> weights (B, D) float32 tensor on ``device``.

    Uses the manifold's on-device decoder when it has one (the autoencoder), else its
    ``inverse_transform``.
    """
    if hasattr(manifold, "decoder_torch"):
        dec = manifold.decoder_torch(device)

        def decode(Zc):
            with torch.no_grad():
                return dec(torch.as_tensor(np.asarray(Zc), dtype=torch.float32, device=device))
        return decode
    return lambda Zc: torch.from_numpy(manifold.inverse_transform(Zc)).to(device)


def make_code_decoder(manifold, evaluator: BatchedEvaluator, formulation: str = "auto"):
    """Latent points (B, d) -> codes (B, K) tensor, when the factored formulation can run.

    It can when ``formulation`` is ``auto`` or ``factored``, the task is an MLP whose first layer
    sees the data (``evaluator.factorable``), the manifold has an affine head
    (``Manifold.affine_head``) and its precomputed first-layer products fit the memory budget;
    the evaluator then holds the head. None otherwise (decode to full weights).
    """
    if formulation not in ("auto", "factored") or not evaluator.factorable:
        return None
    head = manifold.affine_head(evaluator.device) if hasattr(manifold, "affine_head") else None
    if head is None or not evaluator.set_affine_head(head[1], head[2]):
        if formulation == "factored":
            raise GlobscopeError("the factored formulation needs a manifold whose decoder ends in an affine map "
                                 "(autoencoder, PCA) and first-layer products within the memory budget")
        return None
    code_fn, dev = head[0], evaluator.device

    def decode(Zc):
        with torch.no_grad():
            return code_fn(torch.as_tensor(np.asarray(Zc), dtype=torch.float32, device=dev))
    return decode


def manifold_fingerprint(manifold, Z: np.ndarray) -> str:
    """A content hash of a manifold: its decoding of the model points and of their box's corners."""
    lo, hi = Z.min(0), Z.max(0)
    probe = np.vstack([Z[:16], lo, hi, (lo + hi) / 2])
    W = np.asarray(manifold.inverse_transform(probe), dtype=np.float32)
    return hash_json([type(manifold).__name__, np.round(W.astype(np.float64), 5).tolist()])


def models_fingerprint(Z: np.ndarray, W: np.ndarray | None = None) -> str:
    """Identifies the input models: the hash of their weights when given, else of their encoded
    points rounded to a thousandth of the box (an encoder refitted in another process moves
    them in the last bits)."""
    import hashlib

    if W is not None:
        return hashlib.sha256(np.ascontiguousarray(W, dtype=np.float32).tobytes()).hexdigest()[:16]
    ext = np.where(np.ptp(Z, axis=0) > 0, np.ptp(Z, axis=0), 1.0)
    return hash_json(np.round((Z - Z.min(0)) / ext, 3).tolist())


def check_points(manifold, Z: np.ndarray, manifold_path=None, sources: Sequence[str] | None = None) -> None:
    """Refuse encoded points that hold NaN or Inf, naming the manifold file and, when its state holds
    NaN, where (``Manifold.nan_state``).

    Parameters
    ----------
    manifold : Manifold
    Z : ndarray of shape (N, d)
        The input models encoded by ``manifold`` (their weights are finite: reading a checkpoint
        refuses NaN).
    manifold_path : path, optional
    sources : sequence of str, optional
        Each model's checkpoint file.
    """
    bad = np.flatnonzero(~np.isfinite(Z).all(axis=1))
    if not len(bad):
        return
    where = manifold_path or "the manifold"
    nan_state = manifold.nan_state() if hasattr(manifold, "nan_state") else []
    if nan_state:
        names = ", ".join(nan_state[:3]) + (f" and {len(nan_state) - 3} more" if len(nan_state) > 3 else "")
        raise GlobscopeError(f"{where}: the manifold's state holds NaN ({names}), so it encodes {len(bad)} of "
                             f"{len(Z)} models to NaN or Inf; refit it with `globscope fit`")
    first = sources[bad[0]] if sources is not None else f"model {bad[0]}"
    raise GlobscopeError(f"{where}: the manifold encodes {len(bad)} of {len(Z)} models to NaN or Inf (the first: "
                         f"{first}); refit it with `globscope fit`")


def compute_field(decode, evaluator: BatchedEvaluator, grid: LatentGrid, Z: np.ndarray, store: ChunkStore,
                  reference: dict | None = None, ctx: Context | None = None,
                  progress: Callable[[float], None] | None = None,
                  should_abort: Callable[[], bool] | None = None, codes: bool = False
                  ) -> dict[str, np.ndarray] | None:
    """Evaluate every grid point, chunk by chunk, reusing chunks already in ``store``.

    Parameters
    ----------
    decode : callable (B, d) ndarray -> (B, D) Tensor
        Or -> (B, K) codes of the evaluator's affine head when ``codes`` (``make_code_decoder``).
    evaluator : BatchedEvaluator
    grid : LatentGrid
    Z : ndarray of shape (N, d)
        Encoded model points (for ``distance`` and ``bn="reference"``).
    store : ChunkStore
    reference : dict of str to Tensor (N, ...), optional
        Buffers of the input models, for ``bn="reference"``.
    ctx : Context, optional
        Distributed context; chunks are dealt round-robin, rank 0 gets everything.
    progress : callable(float), optional
        Fraction of this rank's chunks done (finished chunks found in the store count at once).
    should_abort : callable() -> bool, optional
        Polled between batches; True raises ``Aborted`` (finished chunks stay in the store).

    Returns
    -------
    dict of str to ndarray of shape (n_points,), or None on ranks other than 0
        ``loss``, ``accuracy``, ``distance`` in point-id order (x fastest).
    """
    ctx = ctx or Context()
    mine = ctx.mine(store.n_chunks)
    stored = set(store.done())
    todo = (i for i in mine if i not in stored)  # lazily: a huge grid has millions of chunks
    n_mine = ctx.share(store.n_points, store.chunk_points) or 1
    done_pts = sum(store.span(i)[1] - store.span(i)[0] for i in stored if i in mine)
    if progress:
        progress(done_pts / n_mine)
    with evaluator.session():
        _compute_chunks(decode, evaluator, grid, Z, store, todo, reference, n_mine, done_pts, progress, should_abort,
                        codes)
    if progress:
        progress(1.0)
    # rank 0 reads its own chunks from its store one at a time; only the other ranks' travel
    theirs = ctx.gather({} if ctx.is_main else {i: store.load(i) for i in mine})
    if not ctx.is_main:
        return None
    fields = {k: np.empty(grid.n_points) for k in FIELDS}

    def put(i, arrays):
        start, stop = store.span(i)
        for k in fields:
            fields[k][start:stop] = arrays[k]

    for i in mine:
        put(i, store.load(i))
    for part in theirs:
        for i, arrays in part.items():
            if not store.has(i):  # another node's chunk: keep it here too
                store.save(i, arrays)
            put(i, arrays)
    return fields


def _compute_chunks(decode, evaluator, grid, Z, store, todo, reference, n_mine, done_pts, progress, should_abort,
                    codes=False):
    for i in todo:
        start, stop = store.span(i)
        pts = grid.points(start, stop)
        dist, nearest = nearest_model(Z, pts)
        loss = np.empty(stop - start)
        acc = np.empty(stop - start)
        for s in range(0, stop - start, evaluator.batch_models):
            if should_abort and should_abort():
                raise Aborted(f"landscape aborted; {len(store.done())} of {store.n_chunks} chunks are kept "
                              f"in {store.folder}")
            e = min(s + evaluator.batch_models, stop - start)
            W = decode(pts[s:e])
            bufs = None
            if evaluator.bn == "reference":
                idx = torch.as_tensor(nearest[s:e])
                bufs = {k: v[idx] for k, v in reference.items()}
            if codes:
                loss[s:e], acc[s:e] = evaluator.evaluate(buffers=bufs, codes=W)
            else:
                loss[s:e], acc[s:e] = evaluator.evaluate(W, bufs)
            done_pts += e - s
            if progress:
                progress(min(done_pts / n_mine, 1.0))
        if "engine" not in store.settings:  # the first chunk: store.json records the engine's choice
            store.settings["engine"] = {**evaluator.choice(), "codes": bool(codes)}
        store.save(i, {LOSS: loss, ACCURACY: acc, DISTANCE: dist})


def _pinned_engine(stored: dict | None, formulation: str) -> dict | None:
    """The engine settings a resumed run takes from its store (``store.json``'s ``engine``), or None.

    Pinned when the run asks for ``auto`` or for the stored formulation; an explicit other
    formulation is honoured (its chunks agree with the stored ones within float tolerance only)."""
    keys = ("formulation", "threads", "data_batch", "batch_models", "codes")
    if not stored or any(k not in stored for k in keys):
        return None
    if formulation not in ("auto", stored["formulation"]):
        log.warning("the chunk store was computed with the %s formulation, this run asks for %s: reused and new "
                    "chunks agree within float tolerance, not bit for bit", stored["formulation"], formulation)
        return None
    log.info("resuming with the first run's engine settings: %s", stored)
    return {k: stored[k] for k in keys}


def _finite_stats(v: np.ndarray) -> dict:
    fin = np.isfinite(v)
    return {"min": float(v[fin].min()) if fin.any() else None, "max": float(v[fin].max()) if fin.any() else None,
            "mean": float(v[fin].mean()) if fin.any() else None}


def non_finite_counts(loss: np.ndarray) -> dict:
    """Counts of NaN, +inf and -inf losses (kept in the field as they are)."""
    return {"nan": int(np.isnan(loss).sum()), "posinf": int(np.isposinf(loss).sum()),
            "neginf": int(np.isneginf(loss).sum()), "total": int((~np.isfinite(loss)).sum())}


LOG_FLOOR = np.finfo(np.float64).tiny


def log_loss(loss: np.ndarray) -> np.ndarray:
    """log10 of the loss, finite losses clipped below at the smallest normal float64.

    A loss of exactly 0 (a perfect point) gives ``log10(tiny)`` ≈ -307.7, not -inf: the topology
    engine orders every non-finite value above all finite ones, so -inf would make the best point
    a maximum. NaN and +inf (the divergence sentinels) stay as they are.
    """
    loss = np.asarray(loss, dtype=np.float64)
    clipped = np.where(np.isfinite(loss) & (loss >= 0), np.maximum(loss, LOG_FLOOR), loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(clipped)


def compute_landscape(manifold, task: Task, Z: np.ndarray, out, settings: LandscapeSettings = LandscapeSettings(),
                      grid: LatentGrid | None = None, W: np.ndarray | None = None,
                      buffers: list[dict] | None = None, memory_budget: int | None = None,
                      manifold_id: str | None = None, manifold_path=None, sources: Sequence[str] | None = None,
                      progress: Callable[[float], None] | None = None,
                      should_abort: Callable[[], bool] | None = None, ctx: Context | None = None) -> dict | None:
    """Compute the loss field of ``task`` over a latent grid and write it to ``out``.

    The landscape stage (:func:`globscope.stages.landscape`) calls this for a manifold file.

    Parameters
    ----------
    manifold : Manifold
        Fitted; decodes latent points (d = 2, 3 or 4) into the task's weight vectors.
    task : Task
    Z : ndarray of shape (N, d)
        Encoded input models: they set the grid's box, ``distance`` and the reference buffers.
    out : path
        Output folder: ``landscape.vti`` (d = 4: ``landscape.npz`` and ``landscape_wNNN.vti``),
        ``landscape.json`` and the chunk store ``.landscape-cache/<key>/``.
    settings : LandscapeSettings
        Resolution and margin of the grid; BatchNorm mode, device, formulation, chunk size,
        calibration size, models per batch and threads of the engine (see ``BatchedEvaluator``).
        The engine's choice on the first chunk (formulation, threads, data batch, models per
        batch; what ``auto`` measured) is recorded in the store's ``store.json`` and reused by a
        resumed run asking for ``auto`` or the same formulation, so that the resumed field equals
        the uninterrupted one bit for bit.
    grid : LatentGrid, optional
        Overrides the settings' resolution and margin.
    W : ndarray of shape (N, D), optional
        The input models' weights; with them ``landscape.json`` gets the fidelity numbers.
    buffers : list of dict, optional
        The input models' buffers (BatchNorm statistics): needed for ``bn="reference"``, and for
        evaluating BatchNorm input models directly.
    memory_budget : int, optional
        Bytes a batch may use (default: from the device's free memory).
    manifold_id : str, optional
        Identifies the manifold in the store's key (e.g. its file's hash); default: a content hash.
    manifold_path : path, optional
        Recorded in ``landscape.json`` and named in errors about the manifold.
    sources : sequence of str, optional
        What each input model is (its checkpoint file), named in errors about a model.
    progress : callable(float), optional
    should_abort : callable() -> bool, optional
    ctx : Context, optional
        Distributed context (default: from the environment; torchrun's variables start it).

    Returns
    -------
    dict or None
        The summary written to ``landscape.json`` (rank 0); None on other ranks.

    Raises
    ------
    GlobscopeError
        Before any set-up: a job too large for this machine, or huge without
        ``settings.allow_huge`` (:mod:`globscope.landscape.limits`); encoded points that hold NaN
        or Inf (``check_points``). After the field is written: a failed fidelity step (the field,
        ``landscape.json`` and the chunk store stay).

    Notes
    -----
    The field and ``landscape.json`` are written as soon as the field is complete; the fidelity
    numbers are added to ``landscape.json`` afterwards.
    """
    t0 = time.perf_counter()
    out = Path(out)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != manifold.dim:
        raise GlobscopeError(f"model points of shape {Z.shape} do not fit the {manifold.dim}-D manifold")
    if getattr(manifold, "n_features_in_", task.layout.n_params) != task.layout.n_params:
        raise GlobscopeError(f"manifold decodes D = {manifold.n_features_in_} weights, task {task.name!r} "
                             f"has D = {task.layout.n_params}")
    st = settings
    sized = st.replace(resolution=tuple(int(n) for n in grid.shape)) if grid is not None else st
    job = estimate(sized, manifold.dim, out, task.name)
    job.check(st.allow_huge)
    log.info("landscape: %s", job.describe())
    check_points(manifold, Z, manifold_path, sources)
    dev = resolve_device(st.device)
    own_ctx = ctx is None
    ctx = ctx or context(dev.type)
    try:
        if dev.type == "cuda" and ctx.world > 1 and st.device in ("auto", "cuda"):
            dev = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
        ev = BatchedEvaluator(task, dev, bn=st.bn, calibration_size=st.calibration_size, formulation=st.formulation,
                              memory_budget=memory_budget, max_batch_models=st.max_batch_models, threads=st.threads)
        reference = None
        if ev.bn == "reference":
            if buffers is None or len(buffers) != len(Z):
                raise GlobscopeError("--bn reference needs the input models' buffers (the checkpoint set)")
            stacked = stack_buffers(buffers, dict(ev.model.named_buffers()), sources)
            reference = {k: v.to(dev) for k, v in stacked.items()}
        request = grid.to_dict() if grid is not None else {"resolution": np.atleast_1d(st.resolution).tolist(),
                                                            "margin": float(st.margin)}
        keyed = {"task": task.name, "n_eval": ev.n_eval, "data": ev.data_fingerprint(), "bn": ev.bn,
                 "calibration_size": ev.describe()["calibration_size"], "chunk_points": int(st.chunk_points),
                 "grid_request": request,
                 "models": models_fingerprint(Z, W)}
        key = hash_json({"format": FORMAT, "version": 1, "manifold": manifold_id or manifold_fingerprint(manifold, Z),
                         **keyed})
        folder = out / CACHE_DIR / key
        # the grid of a run is fixed by its first attempt (stored with its chunks), so a resumed
        # run evaluates exactly the same points even if the encoded points moved in the last bits;
        # so is the engine's choice (formulation, threads, data batch, models per batch, codes or
        # weights), so a resumed run computes the remaining chunks as the first attempt would have
        # (``auto`` might time its way to another choice); rank 0 decides and tells the others
        first = None
        if ctx.is_main:
            stored = read_json(folder / "store.json")
            if stored is not None and "grid" in stored:
                grid = LatentGrid.from_dict(stored["grid"])
            grid = grid or LatentGrid.around(Z, st.resolution, st.margin)
            first = {"grid": grid.to_dict(), "engine": (stored or {}).get("engine")}
        first = ctx.broadcast(first)
        grid = LatentGrid.from_dict(first["grid"])
        if grid.dim != Z.shape[1]:
            raise GlobscopeError(f"grid is {grid.dim}-D, the model points {Z.shape[1]}-D")
        keyed["grid"] = grid.to_dict()
        pinned = _pinned_engine(first["engine"], st.formulation)
        store = ChunkStore(folder, key, grid.n_points, st.chunk_points, keyed)
        done = store.done()
        reused, reused_points = len(done), sum(store.span(i)[1] - store.span(i)[0] for i in done)
        t_eval = time.perf_counter()
        if pinned is not None:
            ev.pin(pinned["formulation"], pinned["threads"], pinned["data_batch"], pinned["batch_models"])
            decode_codes = make_code_decoder(manifold, ev, "auto") if pinned["codes"] else None
            if pinned["codes"] and decode_codes is None:
                log.warning("the stored run decoded latent points to codes of an affine head, which is not "
                            "available now; the resumed chunks may differ from the first run's in the last bits")
        else:
            decode_codes = make_code_decoder(manifold, ev, st.formulation)
        fields = compute_field(decode_codes or make_decoder(manifold, dev), ev, grid, Z, store, reference, ctx,
                               progress=progress, should_abort=should_abort, codes=decode_codes is not None)
        t_eval = time.perf_counter() - t_eval
        if not ctx.is_main:
            return None
        fields[LOG_LOSS] = log_loss(fields[LOSS])
        summary = {
            "format": FORMAT, "version": 1, "key": key, "task": task.name, "latent_dim": grid.dim,
            "grid": grid.to_dict(), "n_points": grid.n_points, "settings": st.to_dict(), "store": keyed,
            "manifold": str(manifold_path) if manifold_path else None, "manifold_id": manifold_id,
            "engine": {**ev.describe(), "world_size": ctx.world, "pinned_by_store": pinned is not None},
            "n_models": len(Z), "chunks": {"total": store.n_chunks, "reused": reused, "folder": str(store.folder)},
            "non_finite_loss": non_finite_counts(fields[LOSS]),
            **{k: _finite_stats(fields[k]) for k in FIELDS},
            "eval_seconds": round(t_eval, 3),
            "points_per_second": round((grid.n_points - reused_points) / max(t_eval, 1e-9), 2),
        }
        if summary["non_finite_loss"]["total"]:
            log.warning("%d grid points have a non-finite loss (kept as NaN/inf)", summary["non_finite_loss"]["total"])
        # the field first: a later step that fails leaves it on disk
        summary["files"] = write_fields(out, grid, fields, task.name)
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        write_json(out / "landscape.json", summary)
        if W is not None:
            try:
                summary["fidelity"] = fidelity(manifold, task, ev, grid, fields[LOSS], Z, W, buffers, dev, sources)
            except Exception as e:  # noqa: BLE001 - any failure of this step: name it, keep the field (cause kept)
                why = str(e) if isinstance(e, GlobscopeError) else f"{type(e).__name__}: {e}"
                written = ", ".join(str(out / f) for f in summary["files"])
                raise GlobscopeError(f"landscape: the fidelity step failed ({why}); the field is written ({written}, "
                                     f"{out / 'landscape.json'} without fidelity numbers)") from e
            summary["seconds"] = round(time.perf_counter() - t0, 3)
            write_json(out / "landscape.json", summary)
        return summary
    finally:
        if own_ctx:
            ctx.close()


def fidelity(manifold, task: Task, ev: BatchedEvaluator, grid: LatentGrid, loss_points: np.ndarray,
             Z: np.ndarray, W: np.ndarray, buffers: list[dict] | None, device, sources=None) -> dict:
    """How far to trust the field at the input models.

    Compares each input model's loss evaluated directly (its own weights and buffers) with the
    field interpolated (multilinearly) at its encoded point, and with the loss of its decoded
    weights ``inverse_transform(transform(w))`` (the decoder's share of the error). BatchNorm input
    models whose checkpoints hold no running statistics (parameters only) are evaluated with
    statistics recomputed on the calibration batch; ``direct_bn`` says which.
    """
    F = grid.to_field(loss_points)
    interp = grid.interpolate(F, Z)
    direct_ev, bufs, direct_bn = ev, None, ev.bn  # ev.bn: None without BatchNorm
    if task.has_batchnorm:
        if has_statistics(buffers, ev.buffer_keys):
            direct_ev = BatchedEvaluator(task, device, bn="reference", formulation=ev.formulation
                                         if ev.formulation != "auto" else "vmap", memory_budget=ev.budget)
            bufs, direct_bn = stack_buffers(buffers, dict(direct_ev.model.named_buffers()), sources), "reference"
        else:
            # ev recomputes them: --bn reference stops before the field without statistics
            log.info("fidelity: the input models' checkpoints hold no BatchNorm statistics; evaluating them with "
                     "statistics recomputed on the calibration batch")
    direct, _ = direct_ev.evaluate(torch.as_tensor(np.asarray(W, dtype=np.float32)), bufs)
    if ev.bn == "reference":
        dec_bufs = stack_buffers(buffers, dict(ev.model.named_buffers()), sources)
    else:
        dec_bufs = None
    decoded, _ = ev.evaluate(make_decoder(manifold, ev.device)(Z), dec_bufs)

    def err(a, b):
        with np.errstate(invalid="ignore"):
            d = np.abs(a - b)
        fin = np.isfinite(d)
        return {"mae": float(d[fin].mean()) if fin.any() else None, "max": float(d[fin].max()) if fin.any() else None,
                "non_finite": int((~fin).sum())}

    return {"field_vs_direct": err(interp, direct), "decoded_vs_direct": err(decoded, direct),
            "field_vs_decoded": err(interp, decoded), "direct_bn": direct_bn,
            "direct_loss": direct.tolist(), "decoded_loss": decoded.tolist(), "field_loss": interp.tolist()}


def write_fields(out, grid: LatentGrid, fields: dict[str, np.ndarray], task_name: str = "") -> list[str]:
    """Write the fields (point-id order, shape (n_points,)) as ``landscape.vti`` (d ≤ 3) or, for
    d = 4, ``landscape.npz`` plus one ``landscape_wNNN.vti`` per slice along the 4th axis."""
    from globscope.vtkxml import write_image_data

    out = Path(out)
    F = {k: grid.to_field(fields[k]) for k in FIELD_ARRAYS if k in fields}
    fd = {"task": np.array([task_name], dtype=object), "latent_dim": np.array([grid.dim])}
    if grid.dim <= 3:
        write_image_data(out / "landscape.vti", F, grid, field_data=fd)
        return ["landscape.vti"]
    from globscope.fileio import atomic_path

    with atomic_path(out / "landscape.npz") as tmp:
        np.savez(tmp, origin=np.array(grid.origin), spacing=np.array(grid.spacing), shape=np.array(grid.shape),
                 **F)
    files = ["landscape.npz"]
    slice_grid = Grid(grid.origin[:3], grid.spacing[:3], grid.shape[:3])
    for l in range(grid.shape[3]):
        name = f"landscape_w{l:03d}.vti"
        w = grid.origin[3] + l * grid.spacing[3]
        write_image_data(out / name, {k: v[..., l] for k, v in F.items()}, slice_grid,
                         field_data={**fd, "w": np.array([w])})
        files.append(name)
    return files


__all__ = ["compute_landscape", "compute_field", "write_fields", "fidelity", "make_decoder", "make_code_decoder",
           "non_finite_counts", "log_loss", "check_points"]
