"""A tiny real bundle for the ParaView tests: digits-mlp zoo (3 variants x 4 epochs), a PCA
manifold, models.vtp and a 16x16 landscape.vti (the core's writers, no ParaView)."""

from __future__ import annotations

from pathlib import Path


def make_bundle(root, zoo=None, resolution: int = 16) -> Path:
    from globscope.bundle import write_model_points
    from globscope.checkpoints import CheckpointSet
    from globscope.compare import per_model_error
    from globscope.landscape import run_landscape
    from globscope.manifolds import make_manifold
    from globscope.tasks import get_task
    from globscope.zoo import train_zoo

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    task = get_task("digits-mlp")
    if zoo is None:
        zoo = train_zoo(task, root / "zoo", n_variants=3, epochs=4, checkpoint_every=1, seed=0)
    cs = zoo if isinstance(zoo, CheckpointSet) else CheckpointSet.open(zoo)
    W, _ = cs.load_weights(task.layout)
    man = make_manifold("pca", 2, seed=0).fit(W)
    man.meta_ = {"task": task.name, "checkpoint_set": str(cs.root.resolve()), "layout": task.layout.to_dict()}
    man.save(root / "manifold.pt")
    write_model_points(root / "models.vtp", man.transform(W), cs, per_model_error(man, W))
    run_landscape(root / "manifold.pt", root, resolution=resolution, margin=0.2)
    return root
