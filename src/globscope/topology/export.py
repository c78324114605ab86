"""Topology results on disk: CSV tables, ``topology.vtu`` (merge tree) and ``topology.vti``
(the field with its simplification and basins), as the topology stage
(:func:`globscope.stages.topology`) writes them, and the reader of field files.

Fields of d = 4, which VTK image data cannot hold, are read from and written to ``.npz``
(arrays indexed x first, plus ``origin`` and ``spacing``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from globscope import names as N
from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path, write_text
from globscope.grid import Grid
from globscope.names import PairType
from globscope.topology.results import TopologyResult
from globscope.vtkxml import VTK_LINE, VTK_VERTEX, read_field, write_image_data, write_unstructured_grid

NPZ_META = ("origin", "spacing", "shape")


@dataclass
class GridField:
    """A scalar field on a regular grid and the other arrays of its file.

    ``values`` is indexed F[i, j(, k, l)], x first, of shape ``grid.shape``; ``arrays`` holds every
    point array of the file in the same layout (the field included).
    """

    path: Path
    name: str
    values: np.ndarray
    grid: Grid
    arrays: dict


def read_grid_field(path, array: str | None = None) -> GridField:
    """Read a scalar field from a ``.vti`` or ``.npz``; errors name the file and the problem."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        if not path.is_file():
            raise GlobscopeError(f"{path}: file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [k for k in z.files if k not in NPZ_META]
                if not names:
                    raise GlobscopeError(f"{path}: holds no field arrays")
                name = array or names[0]
                if name not in names:
                    raise GlobscopeError(f"{path}: no array {name!r} (has {', '.join(names)})")
                arrays = {k: z[k] for k in names}
                meta = {k: np.asarray(z[k], dtype=np.float64).ravel() for k in ("origin", "spacing") if k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise GlobscopeError(f"{path}: not a readable .npz field ({e})") from None
        F = arrays[name]
        if F.dtype.kind not in "fiub":
            raise GlobscopeError(f"{path}: array {name!r} is not numeric ({F.dtype})")
        if any(a.shape != F.shape for a in arrays.values()):
            raise GlobscopeError(f"{path}: arrays of different shapes")
        _check_shape(path, name, F)
        d = F.ndim
        origin = tuple(meta.get("origin", np.zeros(d)))
        spacing = tuple(meta.get("spacing", np.ones(d)))
        if len(origin) != d or len(spacing) != d:
            raise GlobscopeError(f"{path}: origin and spacing need {d} values for a {d}-D field, "
                                 f"got {len(origin)} and {len(spacing)}")
        try:
            grid = Grid(origin, spacing, F.shape)
        except GlobscopeError as e:
            raise GlobscopeError(f"{path}: {e}") from None
        field = GridField(path, name, F.astype(np.float64), grid, arrays)
    else:
        F, data = read_field(path, array)
        name = array or next(iter(data.point_data))
        _check_shape(path, name, F)
        arrays = {k: data.as_field(k) for k, v in data.point_data.items() if np.ndim(v) == 1 and v.dtype != object}
        field = GridField(path, name, F.astype(np.float64), data.grid, arrays)
    return field


def _check_shape(path, name: str, F: np.ndarray) -> None:
    if not 1 <= F.ndim <= 4 or F.size < 2:
        raise GlobscopeError(f"{path}: array {name!r} of shape {F.shape} is not a 1- to 4-D grid of at least "
                             "2 vertices")


def _csv(columns: dict) -> str:
    """A CSV of numeric columns, floats written exactly (``repr``), built column-wise in bulk (a
    row at a time took 0.9 s for a 1024² field's tables)."""
    texts = [list(map(repr if np.asarray(c).dtype.kind == "f" else str, np.asarray(c).tolist()))
             for c in columns.values()]
    return "\n".join([",".join(columns), *map(",".join, zip(*texts))]) + "\n"


# the files each output writes (the field is topology.npz where d = 4)
OUTPUT_FILES = {"tables": ("persistence_pairs.csv", "critical_points.csv", "merge_tree_nodes.csv",
                           "merge_tree_arcs.csv"),
                "tree": ("topology.vtu",), "field": ("topology.vti", "topology.npz")}


def check_outputs(outputs) -> None:
    """Refuse names that are not topology outputs (before any work is done)."""
    unknown = sorted(set(outputs) - set(N.TOPOLOGY_OUTPUTS))
    if unknown:
        raise GlobscopeError(f"unknown topology output {', '.join(map(repr, unknown))}: choose from "
                             f"{', '.join(N.TOPOLOGY_OUTPUTS)}")


def write_topology(result: TopologyResult, field: GridField, out, outputs=N.TOPOLOGY_OUTPUTS) -> list[str]:
    """Write the outputs of ``globscope topology`` into ``out``; return the file names.

    ``outputs`` is a subset of ``names.TOPOLOGY_OUTPUTS``: ``tables`` (the CSVs), ``tree``
    (``topology.vtu``), ``field`` (``topology.vti``, ``.npz`` for d = 4). A skipped output's files
    left by an earlier run are removed, so that no file in ``out`` disagrees with this run.
    ``persistence_pairs.csv`` holds the pairs of the input field (essential pair included);
    the other files describe the simplified field (the input when nothing was simplified).
    """
    check_outputs(outputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for kind in set(N.TOPOLOGY_OUTPUTS) - set(outputs):
        for name in OUTPUT_FILES[kind]:
            (out / name).unlink(missing_ok=True)
    files = []
    if "tables" in outputs:
        files += _write_tables(result, out)
    if "tree" in outputs:
        files.append(_write_tree(result.join_tree, field, out))
    if "field" in outputs:
        files.append(_write_field(result, field, out))
    return files


def _write_tables(result: TopologyResult, out: Path) -> list[str]:
    p = result.pairs
    write_text(out / "persistence_pairs.csv", _csv({
        "birth_vertex": p.birth_vertex, "death_vertex": p.death_vertex, "birth": p.birth,
        "death": p.death, "persistence": p.persistence, "pair_type": p.pair_type}))
    cp = result.critical_points
    write_text(out / "critical_points.csv", _csv({"vertex_id": cp.vertices, "critical_type": cp.types}))
    t = result.join_tree
    write_text(out / "merge_tree_nodes.csv", _csv({
        "node_id": np.arange(t.n_nodes), "vertex_id": t.node_vertex, "scalar": t.node_scalar,
        "critical_type": t.node_type}))
    write_text(out / "merge_tree_arcs.csv", _csv({
        "arc_id": np.arange(t.n_arcs), "down_node": t.arc_down, "up_node": t.arc_up}))
    return list(OUTPUT_FILES["tables"])


def _write_tree(t, field: GridField, out: Path) -> str:
    pos = field.grid.coordinates(t.node_vertex)
    node_arrays = t.node_arrays(pos)
    if pos.shape[1] == 4:
        node_arrays["w"] = pos[:, 3]
    n_nodes, n_arcs = t.n_nodes, t.n_arcs
    # one grid of both kinds of cells: node vertices first (arc arrays -1), then arc lines
    cell_data = {N.NODE_ID: np.concatenate([node_arrays[N.NODE_ID], np.full(n_arcs, -1, np.int32)])}
    for name, a in t.arc_arrays(pos).items():
        cell_data[name] = np.concatenate([np.full(n_nodes, -1, a.dtype), a])
    write_unstructured_grid(
        out / "topology.vtu", pos[:, :3],
        [[i] for i in range(n_nodes)] + [[int(a), int(b)] for a, b in zip(t.arc_down, t.arc_up)],
        [VTK_VERTEX] * n_nodes + [VTK_LINE] * n_arcs,
        point_data=node_arrays, cell_data=cell_data)
    return "topology.vtu"


def _write_field(result: TopologyResult, field: GridField, out: Path) -> str:
    g = field.grid
    grids = dict(field.arrays)
    grids[f"{field.name}_simplified"] = g.to_field(result.simplification.values)
    grids[N.SEGMENTATION_ID] = g.to_field(result.join_tree.segmentation.astype(np.int32))
    grids[N.CRITICAL_TYPE] = g.to_field(result.critical_points.critical_type.astype(np.int32))
    if g.dim <= 3:
        write_image_data(out / "topology.vti", grids, g)
        return "topology.vti"
    with atomic_path(out / "topology.npz") as tmp:
        np.savez(tmp, origin=np.asarray(g.origin), spacing=np.asarray(g.spacing), **grids)
    return "topology.npz"


def summary(result: TopologyResult, field: GridField, settings) -> dict:
    """Counts and settings (a ``TopologySettings``) of a run, as ``topology.json`` records them."""
    return {
        "input": str(field.path), "settings": settings.to_dict(), "engine": result.engine,
        "shape": list(field.values.shape),
        "threshold": float(result.simplification.threshold),
        "n_nonfinite": int(result.n_nonfinite),
        "n_pairs_input": int(len(result.pairs)),
        "n_minima_input": int(np.count_nonzero(result.pairs.pair_type == PairType.MINIMUM_SADDLE)),
        "n_basins": int(result.n_basins),
        "n_nodes": result.join_tree.n_nodes, "n_arcs": result.join_tree.n_arcs,
        "critical_points": {str(k): int(v) for k, v in result.critical_points.counts().items()},
        "seconds": {k: round(v, 4) for k, v in result.timings.items()},
    }
