"""Model zoos: the paper's design in miniature — variants A…G that differ in batch size,
learning rate, weight decay and seed, each saving a checkpoint every K epochs."""

from __future__ import annotations

import logging
import string
import time
from collections.abc import Callable
from pathlib import Path

import torch

from globscope.checkpoints import Checkpoint, CheckpointSet
from globscope.fileio import atomic_path
from globscope.settings import ZooSettings
from globscope.tasks import Task, get_task

log = logging.getLogger(__name__)

# (batch size, learning rate, weight decay): seven distinct training regimes.
VARIANTS = [
    (32, 0.05, 0.0),
    (64, 0.05, 5e-4),
    (128, 0.1, 0.0),
    (32, 0.01, 1e-4),
    (256, 0.1, 5e-4),
    (64, 0.02, 1e-3),
    (128, 0.05, 1e-4),
]


def variant_table(n_variants: int, seed: int) -> list[dict]:
    """Hyper-parameters of variants A, B, …: one distinct seed each (``ZooSettings`` bounds the count)."""
    return [
        {"name": string.ascii_uppercase[i], "batch_size": bs, "lr": lr, "weight_decay": wd,
         "momentum": 0.9, "seed": seed * 1000 + i}
        for i, (bs, lr, wd) in ((i, VARIANTS[i % len(VARIANTS)]) for i in range(n_variants))
    ]


def train_zoo(settings: ZooSettings, out, progress: Callable[[float], None] | None = None) -> CheckpointSet:
    """Train the zoo and write a checkpoint set (``VARIANT/epoch_K.pt`` + ``manifest.json``).

    Deterministic given ``settings.seed``: each variant seeds its initialisation and its data order.
    Each checkpoint's entry records its training loss, evaluation loss and accuracy.
    """
    task = get_task(settings.task)
    return train_runs(task, variant_table(settings.n_variants, settings.seed), out, settings.epochs,
                      settings.checkpoint_every, progress=progress, meta={"seed": settings.seed})


def train_runs(task: Task, runs: list[dict], out, epochs: int | None = None, checkpoint_every: int | None = None,
               progress: Callable[[float], None] | None = None, meta: dict | None = None) -> CheckpointSet:
    """Train one network per entry of ``runs`` (``name``, ``batch_size``, ``lr``, ``momentum``,
    ``weight_decay``, ``seed``: SGD with momentum) into the checkpoint set ``out``, a checkpoint
    every ``checkpoint_every`` epochs and at the end (defaults: the task's). Deterministic: each run
    seeds its initialisation and its data order."""
    out = Path(out)
    epochs = epochs or task.epochs
    every = checkpoint_every or task.checkpoint_every
    train = task.train_data
    checkpoints = []
    total = len(runs) * epochs
    t0 = time.perf_counter()
    for vi, v in enumerate(runs):
        torch.manual_seed(v["seed"])
        model = task.make_model()
        gen = torch.Generator().manual_seed(v["seed"])
        opt = torch.optim.SGD(model.parameters(), lr=v["lr"], momentum=v["momentum"],
                              weight_decay=v["weight_decay"])
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(len(train), generator=gen)
            run_loss, n_seen = 0.0, 0
            for s in range(0, len(perm), v["batch_size"]):
                idx = perm[s:s + v["batch_size"]]
                loss = task.loss_fn(model(train.x[idx]), train.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run_loss += loss.item() * len(idx)
                n_seen += len(idx)
            if epoch % every == 0 or epoch == epochs:
                eval_loss, eval_acc = task.evaluate(model)
                rel = f"{v['name']}/epoch_{epoch}.pt"
                with atomic_path(out / rel) as tmp:
                    torch.save(model.state_dict(), tmp)
                checkpoints.append(Checkpoint(
                    file=rel, run=v["name"], variant=v["name"], epoch=epoch, task=task.name,
                    metrics={"train_loss": run_loss / n_seen, "eval_loss": eval_loss,
                             "eval_accuracy": eval_acc}))
            if progress:
                progress((vi * epochs + epoch) / total)
        log.info("run %s: eval loss %.4f, accuracy %.3f", v["name"], eval_loss, eval_acc)
    cs = CheckpointSet(out, checkpoints, task=task.name, meta={
        "variants": runs, "epochs": epochs, "checkpoint_every": every, **(meta or {}),
        "train_seconds": round(time.perf_counter() - t0, 2)})
    cs.save()
    return cs
