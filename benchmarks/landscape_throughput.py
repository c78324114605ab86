"""Loss-field throughput: the same decoded models evaluated four ways, and peak RSS vs grid size.

(a) ``li``: the per-point loop of loss-landscape (Li et al.): load the vector into the module, then
    run the evaluation data through a ``DataLoader`` with batch size 128;
(b) ``loop``: the best per-model loop: load the vector, one forward pass over the whole set;
(c) ``engine``: ``BatchedEvaluator(formulation="auto")`` on the decoded weights (stacked / vmap /
    loop / grouped for CNNs, threads and data batch measured). For ``fashion-cnn`` it is the
    grouped formulation (first convolution as one product of the shared image patches with all
    models' filters, its 2×2 max pooling fused in, BatchNorm folded into the convolutions, the
    recompute's first statistics in closed form): 5.4–6.6× (a) in two runs on a loaded 2-core
    machine, where the earlier channels-first grouped network reached 2.0–2.2×;
(d) ``factored``: the engine's factored formulation on the same models given as their latent
    points: the manifold's affine head turns them into codes (timed), the first layer runs in
    code space from the precomputed ``P = x @ A1ᵀ`` (built once, not timed, like the evaluation
    data), the later layers' weights are decoded from the codes (timed). Threads and data batch
    measured as in (c). MLP tasks only; forced even where ``auto`` would not pick it (K + 1 ≥ the
    first layer's inputs, e.g. digits-mlp under the autoencoder, where it is slower).

For ``fashion-cnn`` (a)–(c) recompute BatchNorm statistics from the same calibration batch
(256 training images) before evaluating. Models: a 2-D manifold (``--manifold``; default the
paper's autoencoder, whose code is its last hidden layer, K = 128; PCA's is the latent point,
K = 2) of 8 randomly initialised models of the task, decoded on a grid (throughput does not
depend on the values; the autoencoder is fitted for a few epochs only).

Rates are medians of per-model (a, b) or per-batch (c, d) times, the four ways interleaved over
three rounds, so that the load of a shared machine, which comes and goes, reaches each alike.
The GFLOP/s count the forward passes' matrix products and convolutions (torch's flop counter);
for (d) they are *effective*: the FLOPs of the unfactored network over (d)'s time (the FLOPs it
actually does are printed beside them). The peak is the best of 4096² ``torch.mm`` timings taken
in the same run before and after each task.

``--device cuda`` runs (a)–(d) on the GPU: the module and the evaluation data on the device ((a)
moves each batch of 128 there, as loss-landscape does), times taken after the results reach the
host.

    .venv/bin/python benchmarks/landscape_throughput.py [--json] [--tasks ...] [--manifold pca] [--no-rss]
        [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from globscope.errors import GlobscopeError
from globscope.landscape import BatchedEvaluator, LatentGrid, compute_landscape
from globscope.manifolds import make_manifold
from globscope.settings import LandscapeSettings
from globscope.tasks import get_task

# models evaluated by (a), (b), (c), (d) per task
COUNTS = {"digits-mlp": (24, 96, 6144, 6144), "fashion-mlp": (9, 24, 768, 3072), "fashion-cnn": (6, 6, 48, 0)}
CALIBRATION = LandscapeSettings.calibration_size
AE_EPOCHS = 20


def decoded_weights(task, n: int, seed: int = 0, method: str = "autoencoder"):
    """``n`` weight vectors decoded from a 2-D manifold of 8 random models; also the manifold, Z,
    the 8 models and the ``n`` latent points."""
    torch.manual_seed(seed)
    W0 = np.stack([task.layout.flatten(task.make_model().state_dict()) for _ in range(8)])
    params = {"epochs": AE_EPOCHS, "val_fraction": 0.0, "seed": seed} if method == "autoencoder" else {}
    man = make_manifold(method, 2, **params).fit(W0)
    Z = man.transform(W0)
    side = int(np.ceil(np.sqrt(n)))
    grid = LatentGrid.around(Z, side, LandscapeSettings.margin)
    pts = grid.points(0, n)
    return torch.from_numpy(man.inverse_transform(pts)), man, Z, W0, pts


def peak_gflops(reps: int = 7, device: str = "cpu") -> float:
    a, b = torch.randn(4096, 4096, device=device), torch.randn(4096, 4096, device=device)
    torch.mm(a, b)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return 2 * 4096 ** 3 / statistics.median(ts) / 1e9


def recompute_bn(model, x_cal):
    """BatchNorm statistics from one calibration batch (as ``torch.optim.swa_utils.update_bn``)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    model(x_cal)
    model.eval()


@torch.no_grad()
def per_model_loop(task, W, x_cal, loss_of, device="cpu"):
    """Each vector loaded into the module on ``device`` (BatchNorm statistics recomputed from
    ``x_cal`` when given), then ``loss_of(model)``: the losses and the time of each model."""
    model = task.make_model().to(device).eval()
    losses, times = [], []
    for w in W:
        t0 = time.perf_counter()
        model.load_state_dict(task.layout.unflatten(w), strict=False)
        if x_cal is not None:
            recompute_bn(model, x_cal)
        losses.append(loss_of(model))
        times.append(time.perf_counter() - t0)
    return losses, times


def li_loop(task, W, x_cal, device="cpu"):
    """(a) loss-landscape's per-point evaluation: vector into the module, DataLoader of 128."""
    loader = DataLoader(TensorDataset(task.eval_data.x, task.eval_data.y), batch_size=128, shuffle=False)

    def loss_of(model):
        total, correct, n = 0.0, 0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            total += F.cross_entropy(out, yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
            n += len(yb)
        return total / n

    return per_model_loop(task, W, x_cal, loss_of, device)


def best_loop(task, W, x_cal, device="cpu"):
    """(b) the best per-model loop: vector into the module, one forward over the whole set."""
    x, y = task.eval_data.x.to(device), task.eval_data.y.to(device)

    def loss_of(model):
        out = model(x)
        float((out.argmax(1) == y).float().mean())  # the accuracy, as (a) and the engine compute it
        return float(F.cross_entropy(out, y))

    return per_model_loop(task, W, x_cal, loss_of, device)


def engine_batches(ev, W):
    """(c) the engine on ``W`` in batches of ``batch_models``: losses and per-model time of each batch."""
    losses, times = [], []
    for s in range(0, len(W), ev.batch_models):
        t0 = time.perf_counter()
        loss, _ = ev.evaluate(W[s:s + ev.batch_models])
        times.append((time.perf_counter() - t0) / len(W[s:s + ev.batch_models]))
        losses.extend(loss.tolist())
    return losses, times


def factored_evaluator(task, man, device="cpu"):
    """(d)'s evaluator: the manifold's affine head set, ``auto`` measuring threads and data batch
    of the factored formulation only; with the head's code function. None where it cannot run."""
    head = man.affine_head(device)
    if head is None:
        return None, None
    try:
        # threads: the thread counts timed are torch's now (the engine's choice changes it before (d) runs)
        ev = BatchedEvaluator(task, device, formulation="auto", tune_formulations=("factored",),
                              threads=torch.get_num_threads())
    except GlobscopeError:  # not an MLP with a Linear first layer on the data
        return None, None
    if not ev.set_affine_head(head[1], head[2]):
        return None, None
    return ev, head[0]


def factored_batches(ev, code_fn, Zp):
    """(d) on latent points ``Zp``: codes, then the factored engine, in batches of ``batch_models``."""
    losses, times = [], []
    for s in range(0, len(Zp), ev.batch_models):
        t0 = time.perf_counter()
        z = torch.as_tensor(Zp[s:s + ev.batch_models], dtype=torch.float32, device=ev.device)
        loss, _ = ev.evaluate(codes=code_fn(z))
        times.append((time.perf_counter() - t0) / len(z))
        losses.extend(loss.tolist())
    return losses, times


def factored_flops(ev) -> int:
    """FLOPs (d) does per model: the first layer as (K+1)·width products per example, the rest as
    unfactored, plus decoding the later layers' weights from the code."""
    lin = getattr(ev.model, ev.first_linear)
    hd = ev.affine_head
    first = 2 * lin.in_features * lin.out_features * ev.n_eval
    return (ev.flops_per_model() - first + 2 * (hd.K + 1) * lin.out_features * ev.n_eval
            + 2 * hd.K * hd.n_rest)


def bench_task(name: str, peak: float, rounds: int = 3, method: str = "autoencoder", device: str = "cpu") -> dict:
    """The four ways on the same models, interleaved over ``rounds`` (a shared machine's load
    comes and goes: each way sees every phase); medians of per-model times."""
    task = get_task(name)
    n_li, n_loop, n_engine, n_fact = COUNTS.get(name, (8, 16, 256, 256))
    W, man, _, _, pts = decoded_weights(task, max(n_li, n_loop, n_engine, n_fact), method=method)
    W = W.to(device)  # the weights start where each way runs, as decoded weights would
    x_cal = task.train_data.x[:CALIBRATION].to(device) if task.has_batchnorm else None
    ev = BatchedEvaluator(task, device, bn="recompute" if task.has_batchnorm else None,
                          calibration_size=CALIBRATION, formulation="auto")
    evf, code_fn = factored_evaluator(task, man, device) if n_fact else (None, None)
    ways = [("li", lambda lo, hi: li_loop(task, W[lo:hi], x_cal, device), n_li),
            ("loop", lambda lo, hi: best_loop(task, W[lo:hi], x_cal, device), n_loop),
            ("engine", lambda lo, hi: engine_batches(ev, W[lo:hi]), n_engine)]
    if evf is not None:
        ways.append(("factored", lambda lo, hi: factored_batches(evf, code_fn, pts[lo:hi]), n_fact))
    out = {k: ([], []) for k, _, _ in ways}
    with ev.session():
        ev.evaluate(W[:ev.batch_models])  # the auto choice (timed candidates) happens here
        if evf is not None:
            with evf.session():
                factored_batches(evf, code_fn, pts[:evf.batch_models])
            torch.set_num_threads(ev.threads)
        for r in range(rounds):
            for key, fn, n in ways:
                lo, hi = r * n // rounds, (r + 1) * n // rounds
                if hi > lo:
                    if key == "factored":
                        with evf.session():
                            losses, times = fn(lo, hi)
                    else:
                        losses, times = fn(lo, hi)
                    out[key][0].extend(losses)
                    out[key][1].extend(times)
    res = {k: (np.array(v[0]), statistics.median(v[1])) for k, v in out.items()}
    (l_li, t_li), (l_loop, t_loop), (l_eng, t_eng) = res["li"], res["loop"], res["engine"]
    k = min(n_li, n_loop)
    diff = max(np.abs(l_li[:k] - l_loop[:k]).max(), np.abs(l_li[:k] - l_eng[:k]).max(),
               np.abs(l_loop[:k] - l_eng[:k]).max())
    flops = ev.flops_per_model() * (1 + (CALIBRATION / ev.n_eval if task.has_batchnorm else 0))
    r = {"li_models_per_s": 1 / t_li, "loop_models_per_s": 1 / t_loop, "engine_models_per_s": 1 / t_eng,
         "ratio_vs_li": t_li / t_eng, "ratio_vs_loop": t_loop / t_eng,
         "gflops": flops / t_eng / 1e9, "peak_gflops": peak, "max_abs_diff": float(diff),
         "engine_formulation": ev.formulation, "engine_threads": ev.threads, "batch_models": ev.batch_models,
         "data_batch": ev.data_batch, "candidates_ms_per_model": ev.timings,
         "models": [n_li, n_loop, n_engine, n_fact if evf is not None else 0], "manifold": method,
         "factored_models_per_s": None, "factored_ratio_vs_li": None, "factored_ratio_vs_loop": None,
         "factored_ratio_vs_engine": None, "factored_effective_gflops": None, "factored_actual_gflops": None,
         "factored_max_abs_diff_vs_li": None}
    if evf is not None:
        l_f, t_f = res["factored"]
        kf = min(n_li, n_fact)
        r.update({"factored_models_per_s": 1 / t_f, "factored_ratio_vs_li": t_li / t_f,
                  "factored_ratio_vs_loop": t_loop / t_f, "factored_ratio_vs_engine": t_eng / t_f,
                  "factored_effective_gflops": flops / t_f / 1e9,
                  "factored_actual_gflops": factored_flops(evf) / t_f / 1e9,
                  "factored_max_abs_diff_vs_li": float(np.abs(l_li[:kf] - l_f[:kf]).max()),
                  "factored_K": evf.affine_head.K, "factored_precomputed_mib": evf.affine_head.nbytes / 2**20,
                  "factored_threads": evf.threads, "factored_batch_models": evf.batch_models,
                  "factored_data_batch": evf.data_batch, "factored_candidates_ms_per_model": evf.timings})
    return r


def rss_child(resolution: int, chunk_points: int) -> None:
    """Run one digits-mlp field at ``resolution``² and print this process's peak RSS (MiB)."""
    task = get_task("digits-mlp")
    _, man, Z, W0, _ = decoded_weights(task, 4, method="pca")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        compute_landscape(man, task, Z, out, LandscapeSettings(resolution=resolution, chunk_points=chunk_points,
                                                               formulation="stacked", max_batch_models=256, threads=1))
        dt = time.perf_counter() - t0
    print(json.dumps({"resolution": resolution, "peak_rss_mib": peak_rss_mib(), "seconds": dt}))


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (reset by exec, unlike ru_maxrss, which a spawned child
    inherits from the forked parent's pages)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_scaling(sizes=(64, 128, 256), chunk_points: int = LandscapeSettings.chunk_points) -> list[dict]:
    rows = []
    for r in sizes:
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(r), "--chunk-points", str(chunk_points)],
                             capture_output=True, text=True, check=True, env={**os.environ})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["digits-mlp", "fashion-mlp", "fashion-cnn"])
    p.add_argument("--json", action="store_true", help="one JSON object keyed by task")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS scaling runs")
    p.add_argument("--manifold", choices=["autoencoder", "pca"], default="autoencoder",
                   help="the manifold that decodes the models (its affine head feeds (d))")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where (a)-(d) run")
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--chunk-points", type=int, default=LandscapeSettings.chunk_points)
    a = p.parse_args()
    if a.rss_child:
        rss_child(a.rss_child, a.chunk_points)
        return
    # the peak is the best of 4096² mm timings taken before and after every task (a peak, on a
    # machine whose load comes and goes)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("landscape_throughput: --device cuda, but PyTorch sees no CUDA device")
    peaks = [peak_gflops(device=a.device)]
    results = {}
    for t in a.tasks:
        results[t] = bench_task(t, peaks[-1], method=a.manifold, device=a.device)
        peaks.append(peak_gflops(device=a.device))
    peak = max(peaks)
    for r in results.values():
        r["peak_gflops"] = peak
    if not a.no_rss:
        rss = rss_scaling(chunk_points=a.chunk_points)
    if a.json:
        out = dict(results)
        if not a.no_rss:
            out["_rss"] = rss
        print(json.dumps(out, indent=1))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, matmul peak {peak:.1f} GFLOP/s "
          f"(best 4096² mm; samples {', '.join(f'{p:.0f}' for p in peaks)})")
    print(f"models decoded by a 2-D {a.manifold} manifold of 8 random models of each task")
    print(f"{'task':12} {'li/s':>9} {'loop/s':>9} {'engine/s':>10} {'c/a':>7} {'c/b':>6} {'GFLOP/s':>8} "
          f"{'% peak':>7} {'max|diff|':>10}  engine")
    for t, r in results.items():
        print(f"{t:12} {r['li_models_per_s']:9.1f} {r['loop_models_per_s']:9.1f} {r['engine_models_per_s']:10.1f} "
              f"{r['ratio_vs_li']:7.1f} {r['ratio_vs_loop']:6.2f} {r['gflops']:8.1f} "
              f"{100 * r['gflops'] / peak:6.0f}% {r['max_abs_diff']:10.2e}  "
              f"{r['engine_formulation']}, {r['engine_threads']} thr, "
              f"{r['batch_models']} models × {r['data_batch']} examples")
        print(f"{'':12} candidates (ms/model): "
              + ", ".join(f"{k} {v:.3g}" for k, v in r["candidates_ms_per_model"].items()))
    print("(d) factored first layer, from the latent points (codes and later-layer decoding timed); "
          "effective GFLOP/s = the unfactored network's FLOPs / (d)'s time; actual = the FLOPs (d) does")
    print(f"{'task':12} {'K':>4} {'P MiB':>6} {'fact/s':>9} {'d/a':>7} {'d/b':>6} {'d/c':>6} {'eff GF/s':>9} "
          f"{'% peak':>7} {'act GF/s':>9} {'|d-a|':>10}  settings")
    for t, r in results.items():
        if r["factored_models_per_s"] is None:
            print(f"{t:12} n/a (no Linear first layer on the data)")
            continue
        print(f"{t:12} {r['factored_K']:4d} {r['factored_precomputed_mib']:6.1f} {r['factored_models_per_s']:9.1f} "
              f"{r['factored_ratio_vs_li']:7.1f} {r['factored_ratio_vs_loop']:6.2f} "
              f"{r['factored_ratio_vs_engine']:6.2f} "
              f"{r['factored_effective_gflops']:9.1f} {100 * r['factored_effective_gflops'] / peak:6.0f}% "
              f"{r['factored_actual_gflops']:9.1f} {r['factored_max_abs_diff_vs_li']:10.2e}  "
              f"{r['factored_threads']} thr, {r['factored_batch_models']} models × {r['factored_data_batch']} examples")
    if not a.no_rss:
        base = rss[0]["peak_rss_mib"]
        print(f"peak RSS, digits-mlp field, {a.chunk_points} points per chunk:")
        for row in rss:
            print(f"  {row['resolution']:4d}²: {row['peak_rss_mib']:7.1f} MiB ({row['peak_rss_mib'] / base - 1:+.1%}), "
                  f"{row['seconds']:.1f} s")


if __name__ == "__main__":
    main()
