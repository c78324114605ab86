"""The validation stage: mode connectivity and saddle paths (and, on request, re-basin) on a bundle,
with ``validation/report.md`` and ``validation.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from globscope import stages
from globscope.errors import GlobscopeError
from globscope.fileio import write_json, write_text
from globscope.settings import ConnectSettings, LandscapeSettings, PathSettings, RebasinSettings

log = logging.getLogger(__name__)

VALIDATION = "validation"  # a bundle's validation folder
MANIFOLDS = "manifolds"  # a bundle's other manifolds (the baselines), one file per method


def bundle_landscapes(bundle: Path, resolution: int | None = None, progress_factory=None) -> tuple:
    """The bundle's manifold and models, and the landscapes of its manifold and of every manifold in
    ``manifolds/`` (computed into ``validation/fields/`` with the bundle's landscape settings, at
    ``resolution`` vertices per axis when given)."""
    from globscope.validation.connect import landscapes

    man, models = stages.manifold_inputs(bundle / "manifold.pt")
    settings = LandscapeSettings.from_dict(stages.landscape_record(bundle)["settings"]).replace(resolution=resolution)
    files = [bundle / "manifold.pt", *sorted((bundle / MANIFOLDS).glob("*.pt"))]
    return man, models, landscapes(files, models, bundle / VALIDATION / "fields", settings, progress_factory)


def _median(values):
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def summary_of(connectivity: dict, paths: dict) -> dict:
    """What ``summary.json`` keeps: per pair and manifold the MAE, per manifold the median MAE,
    per saddle path the predicted and real barriers."""
    per = {}
    for r in connectivity["rows"]:
        per.setdefault(r["pair"], {})[r["manifold"]] = r["mae"]
    methods = sorted({r["manifold"] for r in connectivity["rows"]})
    return {"connectivity": {"mae": per,
                             "median_mae": {m: _median([r["mae"] for r in connectivity["rows"] if r["manifold"] == m])
                                            for m in methods}},
            "paths": [{"saddle": p["saddle"], "runs": p["runs"], "landscape_barrier": p["landscape_barrier"],
                       "decoded_barrier": p["decoded_barrier"], "weight_line_barrier": p["weight_line_barrier"],
                       "curve_barrier": p.get("curve", {}).get("curve_barrier")} for p in paths["paths"]]}


def bundle_paths(bundle: Path, man, models, settings: PathSettings = PathSettings(),
                 curve_barriers: dict | None = None) -> dict:
    """The saddle paths of a bundle's landscape (``validation/paths.json``, ``.vtp``, ``.png``): its
    topology array and threshold as recorded, the runs whose final model lies in each basin, and the
    trained curves' barriers when given."""
    from globscope.topology import analyze
    from globscope.topology.export import read_grid_field
    from globscope.validation import plots
    from globscope.validation.paths import saddle_paths

    topo = stages.recorded_topology_settings(bundle)
    field = read_grid_field(bundle / stages.landscape_record(bundle)["files"][0], topo.array)
    result = analyze(field.values, topo.persistence, topo.absolute)
    Z, _ = stages.project(man, models)
    variants_of = {}
    for run, b in stages.final_model_basins(bundle / stages.TOPOLOGY, Z, models.cs).items():
        if b["minimum_vertex"] is not None:
            variants_of.setdefault(b["minimum_vertex"], []).append(run)
    out = bundle / VALIDATION
    sp = saddle_paths(man, models.require_task(str(bundle)), field, result, result.simplification.threshold, out,
                      settings, variants_of=variants_of, curve_barriers=curve_barriers)
    plots.saddle_paths(sp, out / "paths.png")
    return sp


def validate(bundle, connect: ConnectSettings = ConnectSettings(), paths: PathSettings = PathSettings(),
             rebasin: RebasinSettings | None = None, progress_factory=None) -> dict:
    """Mode connectivity (every manifold of the bundle) and saddle paths (its own manifold) on a
    bundle made by the demo or the pipeline's stages, and with ``rebasin`` the re-basin experiment
    (into ``validation/rebasin/``); writes ``validation/``.

    Returns
    -------
    dict
        ``validation.json``: the settings, the summary (:func:`summary_of`), the files.
    """
    from globscope.validation import plots
    from globscope.validation.connect import connect as connect_curves

    bar = progress_factory or (lambda desc: None)
    bundle = Path(bundle)
    if not (bundle / "manifold.pt").is_file() or not (bundle / "landscape.json").is_file():
        raise GlobscopeError(f"{bundle}: not a bundle with a manifold and a landscape (manifold.pt, landscape.json)")
    out = bundle / VALIDATION
    if rebasin is not None:  # a model re-basin cannot permute is refused before the curves
        from globscope.tasks import get_task
        from globscope.validation.rebasin_experiment import check_permutable

        check_permutable(get_task(rebasin.task))
    man, models, landscapes = bundle_landscapes(bundle, connect.resolution, progress_factory)
    conn = connect_curves(models, landscapes, out, connect, progress=bar("mode-connectivity curves"))
    barriers = {name: p["curve_barrier"] for name, p in conn["pairs"].items()}
    sp = bundle_paths(bundle, man, models, paths, curve_barriers=barriers)
    figures = [plots.connectivity_losses(conn, out / "connectivity_loss.png").name,
               plots.curves_over_landscapes(conn, landscapes, out / "connectivity_landscapes.png").name,
               "paths.png"]
    summary = summary_of(conn, sp)
    if rebasin is not None:
        from globscope.validation.rebasin_experiment import rebasin_experiment

        rb = rebasin_experiment(out / "rebasin", rebasin, progress_factory=progress_factory)
        figures.append("rebasin/rebasin.png")  # the experiment draws it
        summary["rebasin"] = {k: rb[k] for k in ("n_pairs", "partner_basin_rate", "partner_basin_rate_before",
                                                 "median_barrier_before", "median_barrier_after", "max_output_diff")}
    write_text(out / "report.md", report_md(conn, sp, summary, figures))
    record = {"settings": {"connect": connect.to_dict(), "paths": paths.to_dict()}, **summary,
              "files": [*conn["files"], *sp["files"], "report.md", *figures]}
    write_json(bundle / "validation.json", record)
    return record


def _fmt(v, spec=".3g") -> str:
    return "—" if v is None else format(v, spec)


def report_md(conn: dict, sp: dict, summary: dict, figures: list[str]) -> str:
    """The report: the connectivity table as the authors print it, the saddle paths, the figures."""
    lines = ["# Validation", "",
             "## Mode connectivity", "",
             "Trained curves between final checkpoints; the real loss along each curve against each "
             "manifold's landscape at the curve's projections (evaluation data).", "",
             "Points whose projection falls outside a manifold's grid have no landscape loss: *outside* "
             "counts them (of the curve's points), and the errors are over the others.", "",
             "| pair | manifold | curve loss | projection loss | MAE | median abs error | max abs error | "
             "outside | line barrier | curve barrier |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in conn["rows"]:
        lines.append(f"| {r['pair']} | {r['manifold']} | {_fmt(r['curve_loss_min'])} – {_fmt(r['curve_loss_max'])} | "
                     f"{_fmt(r['projection_loss_min'])} – {_fmt(r['projection_loss_max'])} | {_fmt(r['mae'])} | "
                     f"{_fmt(r['median_abs_error'])} | {_fmt(r['max_abs_error'])} | {r['n_outside']} | "
                     f"{_fmt(r['line_barrier'])} | "
                     f"{_fmt(r['curve_barrier'])} |")
    lines += ["", "Median MAE per manifold: " + ", ".join(
        f"{m} {_fmt(v)}" for m, v in summary["connectivity"]["median_mae"].items()), "",
        f"![loss along the curves]({figures[0]})", "", f"![curves over each landscape]({figures[1]})", "",
        "## Saddle paths", "",
        "The landscape's minimax path between each pair of basins joined at a saddle, decoded and "
        "evaluated for real: the predicted barrier (landscape), the real barrier along the decoded path, "
        "along the weight-space polygon through its vertices, and the trained curve's for the same runs.", "",
        "| saddle | runs | predicted barrier | decoded barrier | weight-space barrier | curve barrier | MAE |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in sp["paths"]:
        runs = " / ".join(",".join(r) or "—" for r in p["runs"])
        lines.append(f"| {p['saddle']} | {runs} | {_fmt(p['landscape_barrier'])} | {_fmt(p['decoded_barrier'])} | "
                     f"{_fmt(p['weight_line_barrier'])} | {_fmt(p.get('curve', {}).get('curve_barrier'))} | "
                     f"{_fmt(p['mae'])} |")
    lines += ["", f"![saddle paths]({figures[2]})", ""]
    if "rebasin" in summary:
        rb = summary["rebasin"]
        lines += ["## Re-basin", "",
                  f"{rb['n_pairs']} pairs, the second of each permuted into the first's basin (its trajectory "
                  "with it), one joint landscape (`rebasin/`).", "",
                  "| partner-basin rate | before re-basin | straight-line barrier before | after | "
                  "largest output difference |", "| --- | --- | --- | --- | --- |",
                  f"| {rb['partner_basin_rate']:.0%} | {rb['partner_basin_rate_before']:.0%} | "
                  f"{_fmt(rb['median_barrier_before'])} | {_fmt(rb['median_barrier_after'])} | "
                  f"{_fmt(rb['max_output_diff'], '.2g')} |", "", f"![re-basin]({figures[3]})", ""]
    return "\n".join(lines)


__all__ = ["validate", "bundle_paths", "bundle_landscapes", "summary_of", "report_md", "VALIDATION", "MANIFOLDS"]
