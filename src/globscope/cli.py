"""The ``globscope`` command line: index, zoo, fit, compare, landscape, topology, demo, render,
paraview, doctor."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from globscope.errors import GlobscopeError

log = logging.getLogger("globscope")


class Bars:
    """Progress bars for the core's ``progress(fraction)`` callbacks; closed together."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars = []

    def __call__(self, desc: str):
        if not self.enabled:
            return None
        from tqdm import tqdm

        bar = tqdm(total=1000, desc=desc, unit="‰", leave=True, file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar:30}| {elapsed}<{remaining}")
        self.bars.append(bar)

        def update(frac: float):
            bar.update(int(round(frac * 1000)) - bar.n)
            if frac >= 1:
                bar.close()

        return update

    def points(self, desc: str, total: int, unit: str = "pt"):
        """A bar over ``total`` items (grid points) with items/s and an ETA, fed by a
        ``progress(fraction)`` callback. Work found done at the first call (resumed chunks) counts
        as the bar's start, so the rate shows only work done now."""
        if not self.enabled:
            return None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=True, file=sys.stderr,
                   smoothing=0.1)
        self.bars.append(bar)
        first = [True]

        def update(frac: float):
            n = min(total, int(round(frac * total)))
            if first[0]:
                first[0] = False
                if n:
                    bar.initial = bar.n = bar.last_print_n = n
                    bar.refresh()
                    return
            bar.update(n - bar.n)
            if frac >= 1:
                bar.close()

        return update

    def close(self):
        for b in self.bars:
            b.close()


def _cmd_index(a, bars):
    from globscope.checkpoints import index_folder

    cs = index_folder(a.folder, task=a.task, prefix=a.prefix)
    print(f"indexed {len(cs)} checkpoints in {len(cs.runs)} runs -> {cs.root / 'manifest.json'}")


def _cmd_zoo(a, bars):
    from globscope.tasks import get_task
    from globscope.zoo import train_zoo

    task = get_task(a.task)
    cs = train_zoo(task, a.out, n_variants=a.variants, epochs=a.epochs, checkpoint_every=a.every,
                   seed=a.seed, progress=bars(f"training {a.task} zoo"))
    print(f"wrote {len(cs)} checkpoints of {len(cs.runs)} variants -> {cs.root / 'manifest.json'}")


def _load_set(a):
    from globscope.checkpoints import CheckpointSet
    from globscope.tasks import get_task

    cs = CheckpointSet.open(a.set, prefix=a.prefix)
    task_name = a.task or cs.task or (cs.tasks[0] if len(cs.tasks) == 1 else None)
    task = get_task(task_name) if task_name else None
    layout = task.layout if task else cs.layout()
    return cs, task_name, layout


def _cmd_fit(a, bars):
    from globscope.manifolds import make_manifold

    cs, task_name, layout = _load_set(a)
    W, _ = cs.load_weights(layout, progress=bars("reading checkpoints"))
    params = {"device": a.device} if a.method == "autoencoder" and a.device else {}
    if a.method == "autoencoder" and a.epochs:
        params["epochs"] = a.epochs
    man = make_manifold(a.method, a.dim, seed=a.seed, **params)
    man.fit(W, progress=bars(f"fitting {a.method}"))
    man.meta_ = {"task": task_name, "checkpoint_set": str(Path(a.set).resolve()), "layout": layout.to_dict()}
    man.save(a.out)
    print(f"{a.method} (d={a.dim}) fitted on {W.shape[0]} models of D={W.shape[1]} in {man.fit_seconds_:.1f} s; "
          f"reconstruction MSE {man.reconstruction_mse(W):.6g} -> {a.out}")


def _cmd_compare(a, bars):
    from globscope.compare import compare, format_table, write_table

    cs, _, layout = _load_set(a)
    W, _ = cs.load_weights(layout, progress=bars("reading checkpoints"))
    rows = compare(W, a.dim, methods=a.methods, seed=a.seed, progress=bars("fitting manifolds"))
    out = Path(a.out) if a.out else Path(a.set)
    write_table(rows, out / f"reconstruction_d{a.dim}.csv", out / f"reconstruction_d{a.dim}.json")
    print(format_table(rows))
    print(f"wrote {out / f'reconstruction_d{a.dim}.csv'} and .json")


def _cmd_demo(a, bars):
    from globscope.compare import format_table
    from globscope.demo import run_demo

    s = run_demo(a.out, task=a.task, dim=a.dim, seed=a.seed, epochs=a.epochs, progress_factory=bars,
                 resolution=a.resolution, persistence=a.persistence, with_render=not a.no_render)
    root = Path(a.out).resolve()
    print(f"\n{s['task']}: {s['n_models']} models of {s['n_variants']} variants, D = {s['n_params']}")
    print("reconstruction error (mean squared error in weight space):")
    print(format_table(s["reconstruction"]))
    land, topo = s["landscape"], s["topology"]
    print(f"\nloss field: {land['n_points']} points ({land['points_per_second']:.0f} points/s), loss "
          f"{land['loss_min']:.4g} .. {land['loss_max']:.4g}; field vs direct loss at the models: "
          f"mean abs error {land['fidelity_mae']:.3g}")
    print(f"topology of {topo['array']} simplified at {topo['persistence']:g} of its range: "
          f"{s['n_basins']} basins for {s['n_variants']} variants; the final checkpoints lie in "
          f"{s['n_basins_of_final_models']} distinct basins")
    print(f"\nbundle: {root}")
    if s["render"].get("png"):
        print(f"rendered: {root / s['render']['png']}   state: {root / s['render']['state']}")
        print(f"open it in the ParaView GUI:  .venv/bin/globscope paraview {root}")
    elif s["render"].get("error"):
        print(f"no render: {s['render']['error']}")


def _cmd_render(a, bars):
    from globscope import paraview_launch

    out = paraview_launch.render(a.bundle, a.out, state=a.state, size=tuple(a.size))
    print(f"wrote {out}")


def _cmd_paraview(a, bars):
    from globscope import paraview_launch

    return paraview_launch.open_gui(a.bundle, state=a.state)


def _cmd_doctor(a, bars):
    import json

    from globscope import paraview_launch

    rep = paraview_launch.doctor()
    if a.json:
        print(json.dumps(rep, indent=1))
    else:
        for k, v in rep.items():
            if k != "problems":
                print(f"{k:>14}: {v}")
        for p in rep["problems"]:
            print(f"       problem: {p}")
    return 1 if rep["problems"] else 0


def _cmd_landscape(a, bars):
    import os

    from globscope.fileio import hash_file, write_json
    from globscope.landscape import LatentGrid, compute_landscape
    from globscope.landscape.distributed import Context
    from globscope.landscape.driver import resolve_inputs

    man, task, W, buffers = resolve_inputs(a.manifold, a.set, a.task)
    Z = man.transform(W)
    grid = LatentGrid.around(Z, a.resolution, a.margin)  # its shape (the bar's total); the engine fixes the rest
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    cp = a.chunk_points
    mine = Context(rank=rank, world=world).mine(-(-grid.n_points // cp))
    share = sum(min((i + 1) * cp, grid.n_points) - i * cp for i in mine)  # this rank's grid points
    progress = bars.points(f"landscape {'×'.join(map(str, grid.shape))}"
                           + (f" (rank {rank} of {world})" if world > 1 else ""), share) if rank == 0 else None
    s = compute_landscape(man, task, Z, a.out, resolution=a.resolution, W=W, buffers=buffers, bn=a.bn, device=a.device,
                          formulation=a.formulation, chunk_points=cp, calibration_size=a.calibration_size,
                          max_batch_models=a.max_batch_models, threads=a.threads, margin=a.margin,
                          manifold_id=hash_file(a.manifold), progress=progress)
    if s is None:  # not rank 0
        return
    s["manifold"] = str(Path(a.manifold).resolve())
    write_json(Path(a.out) / "landscape.json", s)
    e = s["engine"]
    print(f"{task.name}: {s['n_points']} points ({'×'.join(map(str, grid.shape))}) in {s['eval_seconds']:.1f} s, "
          f"{s['points_per_second']:.0f} points/s on {e['device']} ({e['formulation']}, {e['batch_models']} models "
          f"per batch, {e['world_size']} process{'es' if e['world_size'] > 1 else ''}); "
          f"{s['chunks']['reused']} of {s['chunks']['total']} chunks reused")
    nf = s["non_finite_loss"]
    if nf["total"]:
        print(f"non-finite loss at {nf['total']} points (NaN {nf['nan']}, +inf {nf['posinf']}), kept in the field")
    if "fidelity" in s:
        f = s["fidelity"]["field_vs_direct"]
        print(f"fidelity at the {s['n_models']} input models: |field - direct loss| mean {f['mae']:.4g}, "
              f"max {f['max']:.4g}")
    print(f"wrote {', '.join(str(Path(a.out) / f) for f in s['files'])} and {Path(a.out) / 'landscape.json'}")


def _cmd_topology(a, bars):
    from globscope.topology.export import run_topology

    s = run_topology(a.field, a.array, a.persistence, a.absolute, a.out, progress=bars("topology"))
    cps = ", ".join(f"{v} {k}" for k, v in s["critical_points"].items() if k != "regular")
    print(f"{s['input']} [{s['array']}], grid {'x'.join(map(str, s['shape']))}: {s['n_minima_input']} minima; "
          f"threshold {s['threshold']:.6g} leaves {s['n_basins']} basins")
    print(f"simplified field: {cps}; merge tree {s['n_nodes']} nodes, {s['n_arcs']} arcs")
    if s["n_nonfinite"]:
        print(f"{s['n_nonfinite']} non-finite values (ordered above every finite value)")
    print(f"wrote {', '.join(s['files'])} and topology.json -> {a.out}")


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    from globscope.manifolds import DIMS, METHODS
    from globscope.tasks import BUILTIN_TASKS

    p = argparse.ArgumentParser(prog="globscope", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="cmd", required=True)
    tasks_help = f"built-in ({', '.join(BUILTIN_TASKS)}) or package.module:callable"

    s = sub.add_parser("index", help="index a tree VARIANT/epoch_K.pt into manifest.json")
    s.add_argument("folder")
    s.add_argument("--task", help=f"task of every checkpoint: {tasks_help}")
    s.add_argument("--prefix", help="key prefix to strip, e.g. Lightning's 'model.'")
    s.set_defaults(fn=_cmd_index)

    s = sub.add_parser("zoo", help="train a model zoo (variants A..G) into a checkpoint set")
    s.add_argument("task", help=tasks_help)
    s.add_argument("--out", required=True)
    s.add_argument("--variants", type=_at_least(1), default=7)
    s.add_argument("--epochs", type=_at_least(1), help="default: the task's")
    s.add_argument("--every", type=_at_least(1), help="checkpoint every K epochs (default: the task's)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_cmd_zoo)

    def set_args(s):
        s.add_argument("set", help="checkpoint set folder (with manifest.json)")
        s.add_argument("--task", help=f"overrides the manifest's task: {tasks_help}")
        s.add_argument("--prefix", help="key prefix to strip, e.g. Lightning's 'model.'")
        s.add_argument("--dim", type=int, choices=DIMS, default=2)
        s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("fit", help="fit a manifold to a checkpoint set")
    set_args(s)
    s.add_argument("--method", choices=list(METHODS), default="autoencoder")
    s.add_argument("--epochs", type=_at_least(1), help="autoencoder: most training epochs")
    s.add_argument("--device", help="autoencoder: cpu, cuda, … (default: cuda when available)")
    s.add_argument("--out", required=True, help="manifold file, e.g. manifold.pt")
    s.set_defaults(fn=_cmd_fit)

    s = sub.add_parser("compare", help="reconstruction MSE of every manifold method")
    set_args(s)
    s.add_argument("--methods", nargs="+", choices=list(METHODS))
    s.add_argument("--out", help="folder for reconstruction_dD.csv/.json (default: the set's)")
    s.set_defaults(fn=_cmd_compare)

    s = sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--task", default="digits-mlp", help=tasks_help)
    s.add_argument("--dim", type=int, choices=DIMS, default=2)
    s.add_argument("--epochs", type=_at_least(1), help="zoo epochs (default: the task's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resolution", type=_at_least(2), default=128, help="latent grid vertices per axis")
    s.add_argument("--persistence", type=float, default=0.05,
                   help="simplification threshold for the basins, a fraction of the log-loss range")
    s.add_argument("--no-render", action="store_true", help="skip the ParaView render and state")
    s.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("render", help="render a bundle's landscape to PNG with pvbatch (xvfb-run when headless)")
    s.add_argument("bundle")
    s.add_argument("--out", required=True, help="FILE.png")
    s.add_argument("--state", help=".pvsm or Python state (default: Globscope's landscape state)")
    s.add_argument("--size", type=_at_least(16), nargs=2, default=(1600, 1000), metavar=("W", "H"))
    s.set_defaults(fn=_cmd_render)

    s = sub.add_parser("paraview", help="open the ParaView GUI with the plugin loaded and the state applied")
    s.add_argument("bundle")
    s.add_argument("--state", help=".pvsm or Python state (default: Globscope's landscape state)")
    s.set_defaults(fn=_cmd_paraview)

    s = sub.add_parser("doctor", help="report ParaView, TTK and CUDA, and what the pipeline will use")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_doctor)

    from globscope.landscape import BN_MODES, DEFAULT_CHUNK_POINTS, FORMULATIONS

    s = sub.add_parser("landscape", help="evaluate the loss over a latent grid of a fitted manifold "
                                         "(resumable; runs under torchrun)")
    s.add_argument("manifold", help="manifold file (from `globscope fit`)")
    s.add_argument("--task", help=f"overrides the manifold's task: {tasks_help}")
    s.add_argument("--set", help="overrides the manifold's checkpoint set folder")
    s.add_argument("--resolution", type=_at_least(2), nargs="+", required=True,
                   help="grid vertices per axis: one value, or one per latent axis")
    s.add_argument("--margin", type=float, default=0.1, help="fraction of the models' box added on each side")
    s.add_argument("--out", required=True, help="output folder (landscape.vti, landscape.json, chunk cache)")
    s.add_argument("--bn", choices=BN_MODES, help="BatchNorm statistics of decoded models (default: recompute)")
    s.add_argument("--calibration-size", type=_at_least(1), default=256, help="training examples for --bn recompute")
    s.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    s.add_argument("--formulation", choices=FORMULATIONS, default="auto",
                   help="stacked (MLPs), batched (vmap) or per-model (loop) evaluation; auto measures them")
    s.add_argument("--chunk-points", type=_at_least(1), default=DEFAULT_CHUNK_POINTS,
                   help="grid points per stored chunk (resume granularity)")
    s.add_argument("--max-batch-models", type=_at_least(1), help="most models per forward pass (default: from memory)")
    s.add_argument("--threads", type=_at_least(1), help="CPU threads (default: torch's, or fewer where "
                                                         "--formulation auto measures that to be faster)")
    s.set_defaults(fn=_cmd_landscape)

    s = sub.add_parser("topology", help="persistence pairs, simplification, merge (join) tree and basins "
                                        "of a field (.vti, or .npz for d = 4)")
    s.add_argument("field", help="FIELD.vti or FIELD.npz")
    s.add_argument("--array", help="scalar point array (default: the file's first)")
    s.add_argument("--persistence", type=float, default=0.0,
                   help="simplification threshold, a fraction of the field's range (default 0: none)")
    s.add_argument("--absolute", action="store_true", help="--persistence is in the field's units")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(fn=_cmd_topology)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    bars = Bars(enabled=not a.no_progress and (sys.stderr.isatty() or a.verbose))
    try:
        rc = a.fn(a, bars)
    except GlobscopeError as e:
        print(f"globscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("globscope: interrupted; finished work is kept and reused on the next run", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):
            bars.close()
    return rc or 0
