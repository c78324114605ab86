"""Fitting a manifold in a process of its own, for ParaView's Manifold filter.

Inside a ParaView process PyTorch shares the process with ParaView's OpenMP runtime, and a fit
there gains nothing from a second core (the demo zoo: 34 s in pvpython on one or two threads,
23 s for ``globscope fit`` on two; 25 s through this module). The filter therefore runs the fit as this module, with the
Python that holds Globscope's packages (``GLOBSCOPE_PYTHON``, set by Globscope's launcher), reads
its progress lines and kills it when the user aborts::

    python -m globscope.fit_process SET --settings JSON --out MANIFOLD.pt [--task T] [--prefix P]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from globscope.errors import Aborted, GlobscopeError

PROGRESS_MARK = "GLOBSCOPE-FIT-PROGRESS "


def fit_in_process(python: str, checkpoint_set, settings, out, task: str | None = None,
                   prefix: str | None = None, progress=None) -> Path:
    """Run :func:`globscope.stages.fit` in a child ``python`` and wait for it.

    Parameters
    ----------
    python : str
        An interpreter that imports Globscope and PyTorch.
    checkpoint_set : path
        The set's folder or manifest (read with ``prefix``).
    settings : FitSettings
    out : path
        Where the child saves the manifold (atomically).
    progress : callable(float), optional
        Called with each fraction the child reports; whatever it raises (``Aborted``) stops the
        child and is re-raised.

    Returns
    -------
    Path
        ``out``.
    """
    cmd = [python, "-m", "globscope.fit_process", str(checkpoint_set), "--settings", json.dumps(settings.to_dict()),
           "--out", str(out)] + (["--task", task] if task else []) + (["--prefix", prefix] if prefix else [])
    env = dict(os.environ)
    # the launcher's OpenMP settings are for ParaView's process: the child runs as from a shell
    # (measured: 25 s for the demo zoo, against 39 s with passive waiting and 34 s inside pvpython)
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(name, None)

    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in p.stdout:
            if line.startswith(PROGRESS_MARK) and progress is not None:
                progress(float(line[len(PROGRESS_MARK):]))
        err = p.stderr.read()
    except BaseException:
        p.kill()
        p.wait()
        raise
    if p.wait() != 0:
        why = [ln for ln in err.strip().splitlines() if ln.strip()] or [f"exit {p.returncode}"]
        raise GlobscopeError(f"fitting the manifold in its own process failed: {why[-1]}")
    return Path(out)


def main(argv=None) -> int:
    from globscope import stages
    from globscope.settings import FitSettings

    ap = argparse.ArgumentParser(prog="python -m globscope.fit_process", description=__doc__.splitlines()[0])
    ap.add_argument("set")
    ap.add_argument("--settings", required=True, help="FitSettings as JSON")
    ap.add_argument("--out", required=True)
    ap.add_argument("--task")
    ap.add_argument("--prefix")
    a = ap.parse_args(argv)
    try:
        models = stages.load_models(stages.open_set(a.set, prefix=a.prefix), a.task)
        stages.fit(models, FitSettings.from_dict(json.loads(a.settings)), out=a.out,
                   progress=lambda f: print(f"{PROGRESS_MARK}{float(f)!r}", flush=True))
    except (GlobscopeError, Aborted) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
