"""Plugins: a toy third-party plugin registers a technique and a backend through the hooks and
both are used; built-ins register through the same hooks."""
import numpy as np
import pytest

import slmkit
from slmkit import plugins
from slmkit.backends.numpy_ref import NumpyBackend
from slmkit.checkpoint import Tensor
from slmkit.compress import Technique
from slmkit.loading import model_from_checkpoint
from utils import random_checkpoint


class HalveOutputHead(Technique):
    """A toy technique: scales lm_head by 0.5 (so its effect on logits is exact and visible)."""
    name = "toy-halve"

    def apply(self, ckpt, **options):
        t = ckpt.tensors["lm_head.weight"]
        tensors = dict(ckpt.tensors)
        tensors["lm_head.weight"] = Tensor.from_float(t.name, t.to_float32() * 0.5)
        return ckpt.replace(tensors=tensors)


class CountingBackend(NumpyBackend):
    name = "toy-counting"

    def __init__(self, threads=None):
        super().__init__(threads)
        self.matmuls = 0

    def matmul(self, x, weight):
        self.matmuls += 1
        return super().matmul(x, weight)


class ToyPlugin:
    @slmkit.hookimpl
    def slmkit_register_techniques(self, register):
        register(HalveOutputHead())

    @slmkit.hookimpl
    def slmkit_register_backends(self, register):
        register("toy-counting", CountingBackend)


@pytest.fixture
def toy_plugin():
    plugins.register_plugin(ToyPlugin(), name="toy")
    yield
    plugins.unregister_plugin("toy")


def test_builtins_register_through_hooks():
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["slmkit.default_plugins.backends"]["registers"]["backends"] == ["cpu", "numpy"]
    assert "rtn" in listed["slmkit.default_plugins.techniques"]["registers"]["techniques"]
    assert {"hf", "llama2c"} <= set(listed["slmkit.default_plugins.formats"]["registers"]["formats"])
    assert all(p["builtin"] for p in listed.values())


def test_toy_plugin_technique_and_backend_are_used(toy_plugin):
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["toy"]["registers"] == {"techniques": ["toy-halve"], "backends": ["toy-counting"]}
    assert listed["toy"]["builtin"] is False

    ckpt = random_checkpoint(seed=7)
    halved = plugins.get_technique("toy-halve").apply(ckpt)
    model = model_from_checkpoint(halved, "toy-counting")
    assert isinstance(model.backend, CountingBackend)
    ids = [1, 50, 60, 70]
    base = model_from_checkpoint(ckpt, "numpy").logits(ids)
    np.testing.assert_allclose(model.logits(ids), 0.5 * base, rtol=1e-6, atol=1e-6)
    # 7 matmuls per layer (q k v o gate up down) + the output head
    assert model.backend.matmuls == 7 * ckpt.config.num_hidden_layers + 1


def test_plugins_are_gone_after_unregister(toy_plugin):
    plugins.unregister_plugin("toy")
    with pytest.raises(ValueError, match="unknown backend 'toy-counting'"):
        plugins.get_backend("toy-counting")
    plugins.register_plugin(ToyPlugin(), name="toy")  # the fixture unregisters it again


def test_cli_lists_plugins(toy_plugin, capsys):
    from slmkit.cli import main
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "toy\n  backends: toy-counting\n  techniques: toy-halve" in out
    assert "slmkit.default_plugins.backends (built-in)\n  backends: cpu, numpy" in out
