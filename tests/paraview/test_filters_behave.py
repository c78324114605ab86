"""Globscope's filters behave like ParaView's own in pvpython: defaults that pick ``log_loss``,
TTK's TreeType choices, and bad inputs reported once, in one line, without tracebacks."""

import pytest
from conftest import HOOK, PLUGIN, needs_paraview

pytestmark = [pytest.mark.paraview, needs_paraview]

SCRIPT = HOOK + f"""
import json, sys
from paraview.simple import *
LoadPlugin({PLUGIN!r}, remote=False)
land = XMLImageDataReader(FileName=[sys.argv[1] + "/landscape.vti"])
early = TopologicalSimplificationGlobscope(Input=land)  # before the reader ran: no arrays known yet
land.UpdatePipeline()
made = {{"simplification": TopologicalSimplificationGlobscope(Input=land), "tree": MergeTreeGlobscope(Input=land),
         "second tree": MergeTreeGlobscope(Input=land), "diagram": PersistenceDiagramGlobscope(Input=land)}}
out = {{name: list(f.ScalarField) for name, f in made.items()}}
early.UpdatePipeline()
out["early arrays"] = early.PointData.keys()
print("---- TreeType", flush=True)
tree = made["second tree"]
tree.TreeType = "Split Tree"
out["tree type"] = str(tree.TreeType)
tree.UpdatePipeline()
print("---- reader", flush=True)
reader = GlobscopeCheckpointSetReader(FileName="/no/such/set/manifest.json")
reader.UpdatePipelineInformation()
out["variants"] = list(reader.GetProperty("Variants"))
reader.UpdatePipeline()
print("RESULT " + json.dumps(out), flush=True)
"""


def test_filters_default_to_log_loss_and_report_once(pv, bundle):
    rc, out, err, res = pv("pvpython", SCRIPT, str(bundle))
    assert rc == 0 and res, err[-3000:]
    r = res[0]
    for name in ("simplification", "tree", "second tree", "diagram"):  # the landscape's active scalars
        assert r[name] == ["POINTS", "log_loss"], (name, r[name])
    assert "log_loss_Order" in r["early arrays"]  # left unset, it falls back to log_loss too
    assert r["tree type"] == "'Split Tree'"  # TTK's choices, accepted without a traceback
    assert r["variants"] == []
    assert "Traceback" not in err
    tree_errors = [ln for ln in err.splitlines() if ln.startswith("Globscope: GlobscopeMergeTree")]
    assert len(tree_errors) == 1 and "computes the join tree" in tree_errors[0]
    reader_errors = [ln for ln in err.splitlines() if ln.startswith("Globscope: GlobscopeCheckpointSetReader")]
    assert len(reader_errors) == 1 and "/no/such/set" in reader_errors[0]
