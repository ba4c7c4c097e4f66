"""The example plugin: its technique works, and slmkit finds it through its entry point."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
slmkit_magnitude_prune = importlib.import_module("slmkit_magnitude_prune")


def test_prune_rows_zeroes_exactly_the_smallest():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((7, 40)).astype(np.float32)
    out = slmkit_magnitude_prune.prune_rows(w, 0.25)
    for row_in, row_out in zip(w, out):
        zeroed = row_out == 0
        assert zeroed.sum() == 10
        assert np.abs(row_in[zeroed]).max() <= np.abs(row_in[~zeroed]).min()
        np.testing.assert_array_equal(row_out[~zeroed], row_in[~zeroed])


def test_technique_prunes_linear_weights_only():
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
    from utils import random_checkpoint
    ckpt = random_checkpoint(seed=3)
    pruned = slmkit_magnitude_prune.MagnitudePrune().apply(ckpt, sparsity=0.5)
    w = pruned.tensors["model.layers.0.mlp.up_proj.weight"].to_float32()
    assert (w == 0).mean() == pytest.approx(0.5, abs=0.01)
    emb = pruned.tensors["model.embed_tokens.weight"].to_float32()
    np.testing.assert_array_equal(emb, ckpt.tensors["model.embed_tokens.weight"].to_float32())
    with pytest.raises(ValueError, match="sparsity"):
        slmkit_magnitude_prune.MagnitudePrune().apply(ckpt, sparsity=1.5)


def test_found_through_the_entry_point(tmp_path, monkeypatch):
    """Install-free: a dist-info folder on sys.path declares the entry point, as pip would."""
    dist = tmp_path / "slmkit_magnitude_prune-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slmkit-magnitude-prune\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[slmkit]\nmagnitude_prune = slmkit_magnitude_prune\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from slmkit import plugins
    monkeypatch.setattr(plugins, "_pm", None)
    monkeypatch.setattr(plugins, "_registry", None)
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["magnitude_prune"]["registers"] == {"techniques": ["magnitude-prune"]}
    assert plugins.get_technique("magnitude-prune").name == "magnitude-prune"
