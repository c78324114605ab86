"""Cost against network size: how the autoencoder fit, decoding + evaluation and memory grow with D.

For each D (default 10⁴, 3·10⁴, 10⁵, 3·10⁵, 10⁶) an MLP 784-h-10 on Fashion-MNIST with h chosen so
that its parameter count D = 795·h + 10 comes nearest, and N = 105 models of it: 7 runs of 15
checkpoints, each run a random initialisation moving by steps along its own random direction (the
costs measured do not depend on the values; the zoo's trajectories have this shape). Each D runs
in its own process, which measures:

- ``fit_s_per_epoch``: the paper's autoencoder (D-128-64-16-2, full batch, no early stopping) fitted
  for 1 and for 1 + ``--epochs`` epochs; the difference over ``--epochs`` (set-up and
  standardisation cancel out);
- ``points_per_s``: decoding grid points and evaluating the real loss on the task's 2,000
  evaluation images, as the landscape stage does it (``BatchedEvaluator(formulation="auto")``, the
  factored first layer fed by the decoder's affine head where it runs, else full weights): after
  a first batch (the engine's ``auto`` measurements), batches are timed until ``--seconds`` pass;
- ``peak_rss_mb``: the process's peak resident memory (models, fit and field together).

The slopes are least-squares fits of log(cost) against log(D): 1 is linear growth. Per-point cost is
1 / points_per_s. Peak RSS includes PyTorch's own ~0.4 GB, so its slope understates the growth of
what the data need; ``rss_above_smallest_mb`` shows that growth.

    .venv/bin/python benchmarks/scale.py [--json] [--sizes 1e4 1e5 1e6] [--epochs 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

N_RUNS, N_CHECKPOINTS = 7, 15  # N = 105 models
SIZES = (1e4, 3e4, 1e5, 3e5, 1e6)
N_IN, N_OUT = 784, 10


def hidden_for(D: float) -> int:
    """Hidden width h of the MLP 784-h-10 whose parameter count (785·h + (h+1)·10) is nearest D."""
    return max(1, round((D - N_OUT) / (N_IN + 1 + N_OUT)))


def models(task, seed: int = 0) -> np.ndarray:
    """(105, D) float32: 7 runs of 15 checkpoints, each a random init stepping along a random direction."""
    import torch

    gen = np.random.default_rng(seed)
    W = []
    for r in range(N_RUNS):
        torch.manual_seed(seed + r)
        w0 = task.layout.flatten(task.make_model().state_dict()).astype(np.float32)
        step = gen.standard_normal(w0.size).astype(np.float32) * (0.02 * float(np.abs(w0).mean()))
        W.extend(w0 + k * step for k in range(N_CHECKPOINTS))
    return np.stack(W)


def measure(D: float, epochs: int, seconds: float) -> dict:
    """One D, in this process: fit seconds per epoch, points per second, peak RSS."""
    import resource

    import torch

    from globscope.landscape import BatchedEvaluator, LatentGrid
    from globscope.landscape.driver import make_code_decoder, make_decoder
    from globscope.manifolds import make_manifold
    from globscope.settings import LandscapeSettings
    from globscope.tasks import Task, datasets
    from globscope.tasks import models as arch

    h = hidden_for(D)
    task = Task(f"fashion-mlp-{h}", lambda: arch.mlp(N_IN, (h,), N_OUT), datasets.fashion_mnist,
                n_train=1000, n_eval=2000)
    W = models(task)

    def fit(n):
        man = make_manifold("autoencoder", 2, epochs=n, val_fraction=0.0, patience=n + 1, seed=0)
        man.fit(W)
        assert man.n_epochs_ == n, (man.n_epochs_, n)  # no early stop: the epochs timed are the epochs run
        return man, man.fit_seconds_

    fit(1)  # warm-up: allocator and kernels
    _, t1 = fit(1)
    man, tn = fit(1 + epochs)
    Z = man.transform(W)
    ev = BatchedEvaluator(task, "cpu", formulation="auto")
    to_codes = make_code_decoder(man, ev)
    decode = to_codes or make_decoder(man, torch.device("cpu"))
    pts = LatentGrid.around(Z, 64, LandscapeSettings.margin).points(0, 64 ** 2)

    def batch(i):
        P = decode(pts[i * ev.batch_models % len(pts):][:ev.batch_models])
        if to_codes:
            ev.evaluate(codes=P)
        else:
            ev.evaluate(P)
        return len(P)

    with ev.session():
        batch(0)  # auto measures its candidates here
        n, i, t0 = 0, 1, time.perf_counter()
        while i < 3 or time.perf_counter() - t0 < seconds:
            n, i = n + batch(i), i + 1
        points_per_s = n / (time.perf_counter() - t0)
    return {"D": task.layout.n_params, "hidden": h, "N": len(W), "fit_s_per_epoch": (tn - t1) / epochs,
            "points_per_s": points_per_s, "formulation": ev.formulation, "codes": to_codes is not None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=SIZES, help="target parameter counts D")
    ap.add_argument("--epochs", type=int, default=5, help="fit epochs timed per D (after one)")
    ap.add_argument("--seconds", type=float, default=5.0, help="decode+evaluate time per D (after a first batch)")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a child process: measure one D
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.epochs, args.seconds)))
        return 0
    rows = []
    for D in args.sizes:
        # its own process, so that each D's peak RSS is its own
        r = subprocess.run([sys.executable, __file__, "--one", str(D), "--epochs", str(args.epochs),
                            "--seconds", str(args.seconds)], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"scale.py: D = {D:g} failed:\n{r.stderr}")
        rows.append(json.loads(r.stdout.splitlines()[-1]))
        if not args.json:
            print(f"D {rows[-1]['D']:>9,}: fit {rows[-1]['fit_s_per_epoch']:.4f} s/epoch, "
                  f"{rows[-1]['points_per_s']:.1f} points/s, peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    for r in rows:
        r["rss_above_smallest_mb"] = r["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    D = [r["D"] for r in rows]
    slopes = {"fit_s_per_epoch": slope(D, [r["fit_s_per_epoch"] for r in rows]),
              "s_per_point": slope(D, [1 / r["points_per_s"] for r in rows]),
              "peak_rss": slope(D, [r["peak_rss_mb"] for r in rows])}
    if args.json:
        print(json.dumps({"rows": rows, "slopes": slopes}))
    else:
        print("log-log slopes against D (1 = linear): " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
