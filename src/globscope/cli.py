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

    cs = index_folder(a.folder, task=a.task, prefix=a.prefix, variants=dict(a.variant))
    shown = ", ".join(cs.runs[:8]) + (", ..." if len(cs.runs) > 8 else "")
    print(f"indexed {len(cs)} checkpoints in {len(cs.runs)} runs ({shown}) -> {cs.root / 'manifest.json'}")


def _run_variant(text: str) -> tuple[str, str]:
    """An argparse type: RUN=NAME."""
    run, _, name = text.partition("=")
    if not run or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not RUN=NAME")
    return run, name


def _cmd_zoo(a, bars):
    from globscope.settings import ZooSettings
    from globscope.zoo import train_zoo

    settings = ZooSettings(a.task).replace(n_variants=a.variants, epochs=a.epochs, checkpoint_every=a.every,
                                           seed=a.seed)
    cs = train_zoo(settings, a.out, progress=bars(f"training {a.task} zoo"))
    print(f"wrote {len(cs)} checkpoints of {len(cs.runs)} variants -> {cs.root / 'manifest.json'}")


def _models(a, bars):
    from globscope import stages

    return stages.load_models(stages.open_set(a.set, prefix=a.prefix), a.task, progress=bars("reading checkpoints"))


def _fit_settings(a):
    from globscope.settings import FitSettings

    return FitSettings().replace(method=getattr(a, "method", None), dim=a.dim, seed=a.seed,
                                 epochs=getattr(a, "epochs", None), device=getattr(a, "device", None))


def _cmd_fit(a, bars):
    from globscope import stages

    models = _models(a, bars)
    settings = _fit_settings(a)
    man = stages.fit(models, settings, out=a.out, progress=bars(f"fitting {settings.method}"))
    print(f"{settings.method} (d={settings.dim}) fitted on {models.W.shape[0]} models of D={models.W.shape[1]} in "
          f"{man.fit_seconds_:.1f} s; reconstruction MSE {man.reconstruction_mse(models.W):.6g} -> {a.out}")


def _cmd_compare(a, bars):
    from globscope.compare import compare, format_table, write_table

    models = _models(a, bars)
    settings = _fit_settings(a)
    rows = compare(models.W, settings.dim, methods=a.methods, seed=settings.seed, progress=bars("fitting manifolds"))
    out = Path(a.out) if a.out else models.cs.root
    write_table(rows, out / f"reconstruction_d{settings.dim}.csv", out / f"reconstruction_d{settings.dim}.json")
    print(format_table(rows))
    print(f"wrote {out / f'reconstruction_d{settings.dim}.csv'} and .json")


def _cmd_demo(a, bars):
    from globscope.compare import format_table
    from globscope.demo import run_demo
    from globscope.settings import DemoSettings

    d = DemoSettings()
    settings = d.replace(zoo=d.zoo.replace(task=a.task, epochs=a.epochs, seed=a.seed),
                         fit=d.fit.replace(dim=a.dim, seed=a.seed),
                         landscape=d.landscape.replace(resolution=a.resolution),
                         topology=d.topology.replace(persistence=a.persistence),
                         with_render=not a.no_render)
    s = run_demo(a.out, settings, progress_factory=bars)
    root = Path(a.out).resolve()
    print(f"\n{s['task']}: {s['n_models']} models of {s['n_variants']} variants, D = {s['n_params']}")
    print("reconstruction error (mean squared error in weight space):")
    print(format_table(s["reconstruction"]))
    land, topo = s["landscape"], s["topology"]
    print(f"\nloss field: {land['n_points']} points ({land['points_per_second']:.0f} points/s), loss "
          f"{land['loss_min']:.4g} .. {land['loss_max']:.4g}; field vs direct loss at the models: "
          f"mean abs error {land['fidelity_mae']:.3g}")
    print(f"topology of {topo['settings']['array']} simplified at {topo['settings']['persistence']:g} of its range: "
          f"{s['n_basins']} basins for {s['n_variants']} variants; the final checkpoints lie in "
          f"{s['n_basins_of_final_models']} distinct basins")
    if s.get("connectivity"):
        _print_validation(s["connectivity"], s["paths"])
    print(f"\nbundle: {root}")
    if s["render"].get("png"):
        print(f"rendered: {root / s['render']['png']}   state: {root / s['render']['state']}")
        print(f"open it in the ParaView GUI:  .venv/bin/globscope paraview {root}")
    elif s["render"].get("error"):
        print(f"no render: {s['render']['error']}")


def _cmd_render(a, bars):
    from globscope import stages
    from globscope.settings import RenderSettings

    settings = RenderSettings().replace(size=tuple(a.size) if a.size else None)
    print(f"wrote {stages.render(a.bundle, a.out, settings, state=a.state)}")


def _cmd_paraview(a, bars):
    from globscope import paraview_launch

    if a.screenshot:
        print(paraview_launch.gui_screenshot(a.bundle, a.screenshot, state=a.state, size=a.size))
        return 0
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
    from globscope import stages
    from globscope.landscape.distributed import Context
    from globscope.landscape.progress import LogProgress
    from globscope.manifolds import read_manifold_info
    from globscope.settings import LandscapeSettings

    res = a.resolution[0] if a.resolution and len(a.resolution) == 1 else (tuple(a.resolution) if a.resolution
                                                                             else None)
    settings = LandscapeSettings().replace(resolution=res, margin=a.margin, bn=a.bn, device=a.device,
                                           formulation=a.formulation, chunk_points=a.chunk_points,
                                           calibration_size=a.calibration_size,
                                           max_batch_models=a.max_batch_models, threads=a.threads,
                                           allow_huge=a.allow_huge)
    info = read_manifold_info(a.manifold)
    here = Context.from_environment()
    n = settings.n_points(info.dim)
    progress = None
    if here.is_main:  # this rank's share of the grid points: the bar's total
        desc = f"landscape {n} points" + (f" (rank 0 of {here.world})" if here.world > 1 else "")
        total = here.share(n, settings.chunk_points)
        if bars.enabled:
            shown = []

            def progress(frac):  # the bar appears with the work, after the stage's size check
                if not shown:
                    shown.append(bars.points(desc, total))
                shown[0](frac)
        elif not a.no_progress:  # no terminal: log lines (shown without -v too)
            logging.getLogger(LogProgress.__module__).setLevel(logging.INFO)
            progress = LogProgress(desc, total)
    s = stages.landscape(a.manifold, a.out, settings, task=a.task, checkpoint_set=a.set, progress=progress)
    if s is None:  # not rank 0
        return
    e = s["engine"]
    shape = "×".join(map(str, s["grid"]["shape"]))
    print(f"{s['task']}: {s['n_points']} points ({shape}) in {s['eval_seconds']:.1f} s, "
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
    from globscope import stages
    from globscope.settings import TopologySettings

    settings = TopologySettings().replace(array=a.array, persistence=a.persistence, absolute=a.absolute or None)
    s = stages.topology(a.field, a.out, settings, progress=bars("topology"), engine=a.engine, outputs=a.outputs)
    e = s["engine"]
    ttk = f" (TTK {e['version']}, plugin {e['plugin_version']})" if e["name"] == "ttk" else ""
    print(f"engine: {e['name']}{ttk}")
    cps = ", ".join(f"{v} {k}" for k, v in s["critical_points"].items() if k != "regular")
    print(f"{s['input']} [{settings.array}], grid {'x'.join(map(str, s['shape']))}: {s['n_minima_input']} minima; "
          f"threshold {s['threshold']:.6g} leaves {s['n_basins']} basins")
    print(f"simplified field: {cps}; merge tree {s['n_nodes']} nodes, {s['n_arcs']} arcs")
    if s["n_nonfinite"]:
        print(f"{s['n_nonfinite']} non-finite values (ordered above every finite value)")
    print(f"wrote {', '.join(s['files'])} and topology.json -> {a.out}")


def _connect_settings(a):
    from globscope.settings import ConnectSettings

    return ConnectSettings().replace(curve=a.curve, hub=a.hub, pairs=getattr(a, "pairs", None), points=a.points,
                                     steps=a.steps, lr=a.lr, seed=a.seed, resolution=a.resolution)


def _print_connectivity(rows: list[dict]) -> None:
    print(f"{'pair':<8} {'manifold':<12} {'curve loss':>17} {'projection loss':>17} {'MAE':>9} {'median':>9} "
          f"{'line barrier':>12} {'curve barrier':>13}")
    for r in rows:
        def rng(lo, hi):
            return f"{lo:.3g}..{hi:.3g}" if lo is not None else "-"
        mae = f"{r['mae']:.3g}" if r["mae"] is not None else "-"
        med = f"{r['median_abs_error']:.3g}" if r["median_abs_error"] is not None else "-"
        print(f"{r['pair']:<8} {r['manifold']:<12} {rng(r['curve_loss_min'], r['curve_loss_max']):>17} "
              f"{rng(r['projection_loss_min'], r['projection_loss_max']):>17} {mae:>9} {med:>9} "
              f"{r['line_barrier']:>12.3g} {r['curve_barrier']:>13.3g}")


def _print_validation(connectivity: dict, paths: list) -> None:
    """The demo's validation: MAE of each manifold's landscape along each curve, saddle-path barriers."""
    methods = list(connectivity["median_mae"])
    print("\nmode connectivity: |landscape - real loss| along each trained curve, mean (MAE)")
    print(f"{'pair':<8}" + "".join(f"{m:>13}" for m in methods))
    for pair, per in connectivity["mae"].items():
        print(f"{pair:<8}" + "".join(f"{per[m]:>13.3g}" if per.get(m) is not None else f"{'-':>13}"
                                     for m in methods))
    med = connectivity["median_mae"]
    print(f"{'median':<8}" + "".join(f"{med[m]:>13.3g}" if med[m] is not None else f"{'-':>13}" for m in methods)
          + "   median MAE")
    for p in paths:
        print(f"saddle path between basins of {' / '.join(','.join(r) or '-' for r in p['runs'])}: barrier "
              f"{p['landscape_barrier']:.3g} predicted, {p['decoded_barrier']:.3g} real (decoded path)")


def _cmd_connect(a, bars):
    from globscope.settings import LandscapeSettings
    from globscope.validation.connect import connect, landscapes

    models = _models(a, bars)
    lands = landscapes(a.manifold, models, Path(a.out) / "fields", LandscapeSettings().replace(resolution=a.resolution),
                       bars)
    report = connect(models, lands, a.out, _connect_settings(a), progress=bars("mode-connectivity curves"))
    _print_connectivity(report["rows"])
    print(f"wrote connectivity.json, connectivity.csv, curves.safetensors, curves.vtp -> {a.out}")


def _cmd_validate(a, bars):
    from globscope.settings import PathSettings
    from globscope.validation.report import validate

    rebasin = None
    if a.rebasin:
        from globscope.manifolds import read_manifold_info
        from globscope.settings import RebasinSettings

        # on the bundle's task, as its manifold records it
        task = (read_manifold_info(Path(a.bundle) / "manifold.pt").meta or {}).get("task")
        if task is None:
            raise GlobscopeError(f"{Path(a.bundle) / 'manifold.pt'} records no task to run the re-basin experiment "
                                 "on; run `globscope rebasin --task …` instead")
        rebasin = RebasinSettings().replace(task=task)
    rec = validate(a.bundle, _connect_settings(a), PathSettings().replace(samples_per_edge=a.samples_per_edge),
                   rebasin=rebasin, progress_factory=bars)
    print("mode connectivity, median MAE per manifold: " + ", ".join(
        f"{m} {v:.3g}" for m, v in rec["connectivity"]["median_mae"].items() if v is not None))
    for p in rec["paths"]:
        print(f"saddle path {p['saddle']} ({' / '.join(','.join(r) or '-' for r in p['runs'])}): barrier "
              f"{p['landscape_barrier']:.3g} predicted, {p['decoded_barrier']:.3g} decoded, "
              f"{p['weight_line_barrier']:.3g} in weight space")
    if "rebasin" in rec:
        rb = rec["rebasin"]
        print(f"re-basin: {rb['n_pairs']} pairs, partner-basin rate {rb['partner_basin_rate']:.0%}, straight-line "
              f"barrier median {rb['median_barrier_before']:.3g} before, {rb['median_barrier_after']:.3g} after")
    print(f"wrote {Path(a.bundle) / 'validation' / 'report.md'} and {Path(a.bundle) / 'validation.json'}")


def _cmd_paths(a, bars):
    from globscope import stages
    from globscope.settings import PathSettings
    from globscope.validation.report import bundle_paths

    man, models = stages.manifold_inputs(Path(a.bundle) / "manifold.pt")
    sp = bundle_paths(Path(a.bundle), man, models, PathSettings().replace(samples_per_edge=a.samples_per_edge))
    for p in sp["paths"]:
        print(f"saddle path {p['saddle']} ({' / '.join(','.join(r) or '-' for r in p['runs'])}): barrier "
              f"{p['landscape_barrier']:.3g} predicted, {p['decoded_barrier']:.3g} decoded, "
              f"{p['weight_line_barrier']:.3g} in weight space; |landscape - decoded| mean {p['mae']:.3g}")
    print(f"wrote paths.json, paths.vtp, paths.png -> {Path(a.bundle) / 'validation'}")


def _cmd_rebasin(a, bars):
    from globscope.settings import FitSettings, RebasinSettings, TopologySettings
    from globscope.validation.rebasin_experiment import rebasin_experiment

    own = a.set is not None
    if not own and a.pairs and not a.pairs.isdigit():
        raise GlobscopeError(f"--pairs {a.pairs}: a number of pairs to train (or give your checkpoint set)")
    settings = RebasinSettings().replace(task=None if own else a.task, pairs=None if own else a.pairs and int(a.pairs),
                                         method=a.method, epochs=a.epochs, checkpoint_every=a.every, seed=a.seed,
                                         fit_epochs=a.fit_epochs)
    fit = FitSettings().replace(dim=a.dim, seed=a.seed)
    r = rebasin_experiment(a.out, settings, checkpoint_set=a.set, pairs=a.pairs if own else None,
                           task=a.task if own else None, prefix=a.prefix, fit=fit,
                           topology=TopologySettings().replace(persistence=a.persistence), progress_factory=bars)
    print(f"{r['n_pairs']} pairs, {r['n_models']} models, {r['n_basins']} basins: partner-basin rate "
          f"{r['partner_basin_rate']:.0%} (before re-basin {r['partner_basin_rate_before']:.0%}); straight-line "
          f"barrier median {r['median_barrier_before']:.3g} before, {r['median_barrier_after']:.3g} after; "
          f"largest output difference of a permuted network {r['max_output_diff']:.2g}")
    print(f"wrote rebasin.json, rebasin.csv, rebasin.vtp, rebasin.png -> {a.out}")


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


def _between(low: int, high: int):
    """An argparse type: an integer in [low, high]."""
    at_least = _at_least(low)

    def parse(text: str) -> int:
        v = at_least(text)
        if v > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default comes from :mod:`globscope.settings` (options left unset
    are ``None`` and keep the settings' default)."""
    from globscope.names import (
        BN_MODES,
        BUILTIN_TASKS,  # not globscope.tasks: that imports PyTorch (1.2 s)
        FORMULATIONS,
        LATENT_DIMS,
        MANIFOLD_METHODS,
        TOPOLOGY_ENGINES,
        TOPOLOGY_OUTPUTS,
    )
    from globscope.settings import (
        HUGE_FRACTION,
        HUGE_POINTS,
        DemoSettings,
        FitSettings,
        LandscapeSettings,
        RenderSettings,
        TopologySettings,
        ZooSettings,
    )

    zoo, fit, land, topo, ren = ZooSettings(), FitSettings(), LandscapeSettings(), TopologySettings(), RenderSettings()
    demo = DemoSettings()
    p = argparse.ArgumentParser(prog="globscope", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and the cause of an error)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="cmd", required=True)
    tasks_help = f"built-in ({', '.join(BUILTIN_TASKS)}) or package.module:callable"

    s = sub.add_parser("index", help="index a tree VARIANT/epoch_K.pt or Lightning's lightning_logs/version_N/"
                                      "checkpoints/epoch=K-step=S.ckpt into manifest.json")
    s.add_argument("folder")
    s.add_argument("--task", help=f"task of every checkpoint: {tasks_help}")
    s.add_argument("--prefix", help="key prefix to strip, e.g. Lightning's 'model.'")
    s.add_argument("--variant", action="append", default=[], type=_run_variant, metavar="RUN=NAME",
                   help="name the variant of run RUN (a folder: A, version_0, NAME/VERSION); repeatable; "
                        "a run not named is its own variant")
    s.set_defaults(fn=_cmd_index)

    s = sub.add_parser("zoo", help="train a model zoo (variants A..G) into a checkpoint set")
    s.add_argument("task", help=tasks_help)
    s.add_argument("--out", required=True)
    s.add_argument("--variants", type=_between(1, zoo.MAX_VARIANTS),
                   help=f"number of variants, named A.. (default {zoo.n_variants}, at most {zoo.MAX_VARIANTS})")
    s.add_argument("--epochs", type=_at_least(1), help="default: the task's")
    s.add_argument("--every", type=_at_least(1), help="checkpoint every K epochs (default: the task's)")
    s.add_argument("--seed", type=int, help=f"default {zoo.seed}")
    s.set_defaults(fn=_cmd_zoo)

    def set_args(s, dim=True):
        s.add_argument("set", help="checkpoint set: manifest.json, its folder, or a VARIANT/epoch_K tree")
        s.add_argument("--task", help=f"overrides the manifest's task: {tasks_help}")
        s.add_argument("--prefix", help="key prefix to strip, e.g. Lightning's 'model.'")
        if dim:
            s.add_argument("--dim", type=int, choices=LATENT_DIMS, help=f"latent dimension (default {fit.dim})")
        s.add_argument("--seed", type=int, help=f"default {fit.seed}")

    s = sub.add_parser("fit", help="fit a manifold to a checkpoint set")
    set_args(s)
    s.add_argument("--method", choices=MANIFOLD_METHODS.names, help=f"default {fit.method}")
    s.add_argument("--epochs", type=_at_least(1),
                   help="autoencoder: most training epochs, the length of its lr schedule (default: the autoencoder's)")
    s.add_argument("--device", help="autoencoder: cpu, cuda, … (default: cuda when available)")
    s.add_argument("--out", required=True, help="manifold file, e.g. manifold.pt")
    s.set_defaults(fn=_cmd_fit)

    s = sub.add_parser("compare", help="reconstruction MSE of every manifold method")
    set_args(s)
    s.add_argument("--methods", nargs="+", choices=MANIFOLD_METHODS.names)
    s.add_argument("--out", help="folder for reconstruction_dD.csv/.json (default: the set's)")
    s.set_defaults(fn=_cmd_compare)

    s = sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--task", help=f"{tasks_help} (default {demo.zoo.task})")
    s.add_argument("--dim", type=int, choices=LATENT_DIMS, help=f"default {demo.fit.dim}")
    s.add_argument("--epochs", type=_at_least(1), help="zoo epochs (default: the task's)")
    s.add_argument("--seed", type=int, help=f"zoo and autoencoder seed (default {demo.zoo.seed})")
    s.add_argument("--resolution", type=_at_least(2), help=f"latent grid vertices per axis "
                                                           f"(default {demo.landscape.resolution})")
    s.add_argument("--persistence", type=float, help="simplification threshold for the basins, a fraction of "
                                                     f"the log-loss range (default {demo.topology.persistence})")
    s.add_argument("--no-render", action="store_true", help="skip the ParaView render and state")
    s.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("render", help="render a bundle's landscape to PNG with pvbatch (xvfb-run when headless)")
    s.add_argument("bundle")
    s.add_argument("--out", required=True, help="FILE.png")
    s.add_argument("--state", help=".pvsm or Python state (default: Globscope's landscape state)")
    s.add_argument("--size", type=_at_least(16), nargs=2, metavar=("W", "H"),
                   help=f"pixels (default {ren.size[0]} {ren.size[1]})")
    s.set_defaults(fn=_cmd_render)

    s = sub.add_parser("paraview", help="open the ParaView GUI with the plugin loaded and the state applied")
    s.add_argument("bundle")
    s.add_argument("--state", help=".pvsm or Python state (default: Globscope's landscape state)")
    s.add_argument("--screenshot", metavar="PNG", help="open the GUI on a private display with a fresh profile, save "
                                                        "the whole window once the state is applied, and exit")
    s.add_argument("--size", nargs=2, type=int, default=(1600, 1000), metavar=("W", "H"),
                   help="the window's size with --screenshot (default 1600 1000)")
    s.set_defaults(fn=_cmd_paraview)

    s = sub.add_parser("doctor", help="report ParaView, TTK and CUDA, and what the pipeline will use")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_doctor)

    s = sub.add_parser("landscape", help="evaluate the loss over a latent grid of a fitted manifold "
                                         "(resumable; runs under torchrun)")
    s.add_argument("manifold", help="manifold file (from `globscope fit`)")
    s.add_argument("--task", help=f"overrides the manifold's task: {tasks_help}")
    s.add_argument("--set", help="overrides the manifold's checkpoint set folder")
    s.add_argument("--resolution", type=_at_least(2), nargs="+",
                   help=f"grid vertices per axis: one value, or one per latent axis (default {land.resolution})")
    s.add_argument("--margin", type=float, help=f"fraction of the models' box added on each side "
                                                f"(default {land.margin})")
    s.add_argument("--out", required=True, help="output folder (landscape.vti, landscape.json, chunk cache)")
    s.add_argument("--bn", choices=BN_MODES.names, help=f"BatchNorm statistics of decoded models (default {land.bn})")
    s.add_argument("--calibration-size", type=_at_least(1),
                   help=f"training examples for --bn recompute (default {land.calibration_size})")
    s.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    s.add_argument("--formulation", choices=FORMULATIONS,
                   help=f"how batches of models are evaluated; auto measures the others (default {land.formulation})")
    s.add_argument("--chunk-points", type=_at_least(1),
                   help=f"grid points per stored chunk, the resume granularity (default {land.chunk_points})")
    s.add_argument("--max-batch-models", type=_at_least(1), help="most models per forward pass (default: from memory)")
    s.add_argument("--threads", type=_at_least(1), help="CPU threads (default: torch's, or fewer where "
                                                         "--formulation auto measures that to be faster)")
    s.add_argument("--allow-huge", action="store_true", default=None,
                   help=f"run a huge job (more than {HUGE_POINTS:.0e} points, or over {100 * HUGE_FRACTION:.0f}%% "
                        "of the available memory or free disk) that still fits this machine; one that does not fit "
                        "is always refused, with the estimate")
    s.set_defaults(fn=_cmd_landscape)

    from globscope.settings import ConnectSettings, PathSettings, RebasinSettings

    con, pth, reb = ConnectSettings(), PathSettings(), RebasinSettings()

    def curve_args(s):
        s.add_argument("--hub", help="curves from this run to every other one (default: the last run)")
        s.add_argument("--curve", choices=("bezier", "polychain"), help=f"default {con.curve}")
        s.add_argument("--points", type=_at_least(2), help=f"points along each curve, ends included "
                                                           f"(default {con.points})")
        s.add_argument("--steps", type=_at_least(1), help=f"training steps of each curve (default {con.steps})")
        s.add_argument("--lr", type=float, help=f"learning rate of the curves (default {con.lr})")
        s.add_argument("--resolution", type=_at_least(2), help="vertices per axis of the fields computed for "
                                                               "manifolds without one (default: as the bundle's)")

    s = sub.add_parser("connect", help="mode-connectivity curves between final checkpoints, measured for real "
                                       "and projected onto manifolds' landscapes")
    set_args(s, dim=False)
    curve_args(s)
    s.add_argument("--pairs", help="A-B,C-D: these pairs instead of the hub's")
    s.add_argument("--manifold", action="append", required=True,
                   help="a manifold to project onto (repeatable); its landscape is the one beside it "
                        "(a bundle's) or computed into OUT/fields/")
    s.add_argument("--out", required=True, help="output folder (e.g. a bundle's validation/)")
    s.set_defaults(fn=_cmd_connect)

    s = sub.add_parser("validate", help="mode connectivity on every manifold of a bundle and its saddle paths "
                                        "(validation/report.md, validation.json)")
    s.add_argument("bundle")
    curve_args(s)
    s.add_argument("--seed", type=int, help=f"default {con.seed}")
    s.add_argument("--rebasin", action="store_true",
                   help="also the re-basin experiment on the bundle's task (pairs trained into validation/rebasin/)")
    s.add_argument("--samples-per-edge", type=_at_least(1),
                   help=f"saddle paths: latent points per grid edge (default {pth.samples_per_edge})")
    s.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("paths", help="a bundle's saddle paths: the landscape's minimax paths between joined "
                                     "basins, decoded and evaluated for real")
    s.add_argument("bundle")
    s.add_argument("--samples-per-edge", type=_at_least(1),
                   help=f"latent points per grid edge (default {pth.samples_per_edge})")
    s.set_defaults(fn=_cmd_paths)

    s = sub.add_parser("rebasin", help="Git Re-Basin on pairs of networks, one joint landscape: partner-basin "
                                       "rate and straight-line barriers before and after")
    s.add_argument("set", nargs="?", help="your checkpoint set (then --pairs A-B,C-D); default: train pairs")
    s.add_argument("--task", help=f"{tasks_help} (default {reb.task}; with your set, overrides its manifest's)")
    s.add_argument("--prefix", help="your set: key prefix to strip, e.g. Lightning's 'model.'")
    s.add_argument("--pairs", help=f"number of pairs to train (default {reb.pairs}), or A-B,C-D of your set")
    s.add_argument("--method", choices=("weight", "activation"), help=f"matching (default {reb.method})")
    s.add_argument("--epochs", type=_at_least(1), help="training epochs (default: the task's)")
    s.add_argument("--every", type=_at_least(1), help="checkpoint every K epochs (default: the task's)")
    s.add_argument("--seed", type=int, help=f"default {reb.seed}")
    s.add_argument("--dim", type=int, choices=LATENT_DIMS, help=f"latent dimension (default {fit.dim})")
    s.add_argument("--fit-epochs", type=_at_least(1),
                   help=f"most epochs of the joint autoencoder, the length of its lr schedule "
                        f"(default {reb.fit_epochs})")
    s.add_argument("--persistence", type=float, help=f"basins' simplification threshold, a fraction of the "
                                                     f"log-loss range (default {topo.persistence}); a rerun into "
                                                     "the same --out reuses the models and the manifold")
    s.add_argument("--out", required=True, help="the experiment's folder")
    s.set_defaults(fn=_cmd_rebasin)

    s = sub.add_parser("topology", help="persistence pairs, simplification, merge (join) tree and basins "
                                        "of a field (.vti, or .npz for d = 4)")
    s.add_argument("field", help="FIELD.vti or FIELD.npz")
    s.add_argument("--array", help=f"scalar point array (default {topo.array})")
    s.add_argument("--persistence", type=float,
                   help=f"simplification threshold, a fraction of the field's range (default {topo.persistence}): "
                        "pairs of persistence <= it are removed, as in TTK (0 removes only flat, zero-persistence "
                        "pairs)")
    s.add_argument("--absolute", action="store_true", help="--persistence is in the field's units")
    s.add_argument("--engine", choices=TOPOLOGY_ENGINES, default="globscope",
                   help="globscope (default, the fastest), ttk (native TTK through pvpython: the plugin must "
                        "load, e.g. from PV_PLUGIN_PATH; .vti only) or auto (TTK where it runs); both engines "
                        "write the same files")
    s.add_argument("--outputs", nargs="+", choices=TOPOLOGY_OUTPUTS, default=TOPOLOGY_OUTPUTS, metavar="OUTPUT",
                   help="what to write besides topology.json (default all): tables (the CSVs), tree (topology.vtu), "
                        "field (topology.vti with the simplified field and basins); files of the others left by "
                        "an earlier run are removed")
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
    except GlobscopeError as e:  # the user's mistake: one line (its cause too with -v)
        if a.verbose and e.__cause__ is not None:
            import traceback

            traceback.print_exception(e.__cause__, file=sys.stderr)
        print(f"globscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("globscope: interrupted; finished work is kept and reused on the next run", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):
            bars.close()
    return rc or 0
