"""The ``globscope`` command line: index, zoo, fit, compare, demo."""

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

    s = run_demo(a.out, task=a.task, dim=a.dim, seed=a.seed, epochs=a.epochs, progress_factory=bars)
    print(f"\n{s['task']}: {s['n_models']} models of {s['n_variants']} variants, D = {s['n_params']}")
    print("reconstruction error (mean squared error in weight space):")
    print(format_table(s["reconstruction"]))
    print(f"\nbundle: {Path(a.out).resolve()}  (models.vtp opens in ParaView)")


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
    s.add_argument("--variants", type=int, default=7)
    s.add_argument("--epochs", type=int, help="default: the task's")
    s.add_argument("--every", type=int, help="checkpoint every K epochs (default: the task's)")
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
    s.add_argument("--epochs", type=int, help="autoencoder: most training epochs")
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
    s.add_argument("--epochs", type=int, help="zoo epochs (default: the task's)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_cmd_demo)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    bars = Bars(enabled=not a.no_progress and sys.stderr.isatty() or a.verbose)
    try:
        a.fn(a, bars)
    except GlobscopeError as e:
        print(f"globscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("globscope: interrupted; finished work is kept and reused on the next run", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):
            bars.close()
    return 0
