"""The Manifold filter's fit in a process of its own (globscope.fit_process): the same manifold as
in this process, its progress, abort and errors."""

import sys

import numpy as np
import pytest

from globscope import stages
from globscope.errors import Aborted, GlobscopeError
from globscope.fit_process import fit_in_process
from globscope.manifolds import load_manifold
from globscope.settings import FitSettings


def test_same_manifold_as_in_this_process_with_progress(digits_zoo, tmp_path):
    settings = FitSettings(method="autoencoder", epochs=30, seed=3)
    seen = []
    out = fit_in_process(sys.executable, digits_zoo.root, settings, tmp_path / "child.pt", task="digits-mlp",
                         progress=seen.append)
    here = stages.fit(stages.load_models(digits_zoo, "digits-mlp"), settings)
    W = stages.load_models(digits_zoo, "digits-mlp").W
    # equal to float32 rounding: the child runs on the machine's threads, this process on one
    # (conftest), so the products sum in another order
    Z = here.transform(W)
    np.testing.assert_allclose(load_manifold(out).transform(W), Z, rtol=0, atol=1e-5 * np.abs(Z).max())
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= 1


def test_abort_stops_the_child_and_leaves_no_file(digits_zoo, tmp_path):
    def abort(f):
        raise Aborted("aborted")

    with pytest.raises(Aborted):
        fit_in_process(sys.executable, digits_zoo.root, FitSettings(epochs=400), tmp_path / "m.pt",
                       task="digits-mlp", progress=abort)
    assert not (tmp_path / "m.pt").exists()


def test_errors_come_back_as_one_line(tmp_path):
    with pytest.raises(GlobscopeError, match=r"own process failed: error: .*no_such_set.*not found") as e:
        fit_in_process(sys.executable, tmp_path / "no_such_set", FitSettings(method="pca"), tmp_path / "m.pt")
    assert "\n" not in str(e.value)
