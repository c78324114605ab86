"""The validation's figures (matplotlib, written atomically as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from globscope.fileio import atomic_path

COLOURS = {"autoencoder": "#1b9e77", "pca": "#d95f02", "kernel-pca": "#7570b3", "umap": "#e7298a"}


def _figure(n_panels: int, width: float = 4.2, height: float = 3.4, cols: int | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = cols or min(n_panels, 3)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def connectivity_losses(report: dict, path: Path) -> Path:
    """Per pair: the real loss along the trained curve and along the straight line, and each
    manifold's landscape loss at the curve's projections, against t."""
    pairs = report["pairs"]
    fig, axes = _figure(len(pairs))
    for ax, (name, p) in zip(axes, pairs.items()):
        t = np.asarray(p["t"])
        ax.plot(t, p["line_loss"], color="0.6", ls="--", lw=1.5, label="straight line (real)")
        for m, q in p["manifolds"].items():
            ax.plot(t, q["landscape_loss"], color=COLOURS.get(m), lw=1.3, alpha=0.9,
                    label=f"{m} landscape (MAE {q['mae']:.3g})" if q["mae"] is not None else f"{m} landscape")
        ax.plot(t, p["real_loss"], color="black", lw=2.2, label="curve (real)")
        ax.set_yscale("log")
        ax.set_title(f"{name}: curve barrier {p['curve_barrier']:.3g}, line {p['line_barrier']:.3g}", fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6.5, loc="upper right")
    return _save(fig, path)


def curves_over_landscapes(report: dict, landscapes, path: Path) -> Path:
    """The authors' figure: each manifold's landscape (log10 loss) with the curves' projections,
    side by side (2-D manifolds; the first two latent axes otherwise)."""
    fig, axes = _figure(len(landscapes), width=4.4, height=4.0, cols=len(landscapes))
    for ax, land in zip(axes, landscapes):
        F = np.log10(np.clip(land.loss, 1e-12, None))
        F2 = F if F.ndim == 2 else F[(slice(None), slice(None)) + tuple(s // 2 for s in F.shape[2:])]
        (x0, x1), (y0, y1) = land.grid.bounds[:2]
        im = ax.imshow(F2.T, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="auto")
        for name, p in report["pairs"].items():
            Z = np.asarray(p["manifolds"][land.name]["latent"])
            ax.plot(Z[:, 0], Z[:, 1], lw=1.6, label=name)
            ax.plot(Z[[0, -1], 0], Z[[0, -1], 1], "o", ms=3.5, color="white", mec="black", mew=0.6)
        ax.set_title(land.name)
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="log10 loss")
    axes[0].legend(fontsize=6.5, loc="lower left")
    return _save(fig, path)


def saddle_paths(report: dict, path: Path) -> Path:
    """Per saddle path: the landscape's loss, the decoded models' real loss and the real loss
    along the weight-space polygon, against t."""
    paths = report["paths"]
    fig, axes = _figure(max(len(paths), 1))
    for ax, p in zip(axes, paths):
        t = np.asarray(p["t"])
        ax.plot(t, p["weight_line_loss"], color="0.6", ls="--", lw=1.4, label="weight-space polygon (real)")
        ax.plot(t, p["landscape_loss"], color=COLOURS["autoencoder"], lw=1.6, label="landscape")
        ax.plot(t, p["decoded_loss"], color="black", lw=1.2, ls=":", label="decoded (real)")
        ax.set_yscale("log")
        ax.set_title(f"saddle {p['saddle']}: barrier {p['landscape_barrier']:.3g} predicted, "
                     f"{p['decoded_barrier']:.3g} real", fontsize=9)
        ax.set_xlabel("t (fraction of the path)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6.5)
    return _save(fig, path)


def rebasin(report: dict, path: Path) -> Path:
    """Per pair: the straight-line barrier before and after re-basin, the after-bar coloured by
    whether πB landed in A's basin."""
    rows = report["pairs"]
    fig, axes = _figure(1, width=max(6.0, 0.22 * len(rows) + 2), height=3.6, cols=1)
    ax = axes[0]
    x = np.arange(len(rows))
    landed = np.array([r["rebasined_in_partner_basin"] for r in rows], dtype=bool)
    after = np.array([r["barrier_after"] for r in rows])
    ax.bar(x - 0.2, [r["barrier_before"] for r in rows], 0.4, color="0.65", label="A→B (before)")
    ax.bar(x[landed] + 0.2, after[landed], 0.4, color=COLOURS["autoencoder"], label="A→πB, πB in A's basin")
    ax.bar(x[~landed] + 0.2, after[~landed], 0.4, color=COLOURS["pca"], label="A→πB, πB elsewhere")
    # a marker under each pair: the after-bars are often too short to show their colour
    ax.scatter(x + 0.2, np.full(len(x), -0.03), s=10, marker="s", clip_on=False,
               c=[COLOURS["autoencoder"] if v else COLOURS["pca"] for v in landed],
               transform=ax.get_xaxis_transform())
    ax.set_xticks(x, [r["a"][1:] for r in rows], fontsize=7)
    ax.tick_params(axis="x", pad=8)
    ax.set_xlabel("pair")
    ax.set_ylabel("loss barrier on the straight line")
    rate = report.get("partner_basin_rate")
    topo = report.get("topology", {})
    ax.set_title((f"partner-basin rate {rate:.0%}" if rate is not None else "re-basin")
                 + (f" ({report['n_basins']} basins, persistence {topo['persistence']:g})" if "n_basins" in report
                    and "persistence" in topo else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


__all__ = ["connectivity_losses", "curves_over_landscapes", "saddle_paths", "rebasin"]
