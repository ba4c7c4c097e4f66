"""A toy third-party plugin, installed the way pip installs one (a module plus a dist-info folder
declaring an entry point in the `slmkit` group), is found without any registration call; its
technique and backend are then used through the Python API and the command line. A broken
plugin is skipped with a warning and does not break slmkit."""
import textwrap

import numpy as np
import pytest

import slmkit
from slmkit import plugins
from slmkit.cli import main

TOY_PLUGIN = '''
    """A toy slmkit plugin: a technique that scales the output head, and a counting backend."""
    import slmkit
    from slmkit.backends.numpy_ref import NumpyBackend
    from slmkit.checkpoint import Tensor
    from slmkit.compress import Technique

    CALLS = {"matmul": 0, "apply": 0}


    class ScaleHead(Technique):
        name = "toy-scale-head"

        def apply(self, ckpt, factor=0.5, **options):
            CALLS["apply"] += 1
            name = ("lm_head.weight" if "lm_head.weight" in ckpt.tensors
                    else "model.embed_tokens.weight")
            t = ckpt.tensors[name]
            tensors = dict(ckpt.tensors)
            tensors[name] = Tensor.from_float(name, t.to_float32() * factor)
            return ckpt.replace(tensors=tensors, quantization={"method": self.name})


    class CountingBackend(NumpyBackend):
        name = "toy-counting"

        def matmul(self, x, weight):
            CALLS["matmul"] += 1
            return super().matmul(x, weight)


    @slmkit.hookimpl
    def slmkit_register_techniques(register):
        register(ScaleHead())


    @slmkit.hookimpl
    def slmkit_register_backends(register):
        register("toy-counting", CountingBackend)
'''


def install(site, module: str, source: str, entry_name: str) -> None:
    """What `pip install` leaves in site-packages: the module and its dist-info."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist = site / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[slmkit]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_pm", None)          # rebuilt on first use, from entry points
    monkeypatch.setattr(plugins, "_registry", None)
    yield site
    plugins._pm, plugins._registry = None, None


def test_installed_plugin_is_listed_and_used(site, stories_hf, tmp_path, capsys):
    install(site, "toy_slmkit_plugin", TOY_PLUGIN, "toy")
    import toy_slmkit_plugin as toy
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["toy"] == {"name": "toy", "builtin": False,
                             "registers": {"backends": ["toy-counting"],
                                           "techniques": ["toy-scale-head"]}}
    assert main(["plugins"]) == 0
    assert "toy\n  backends: toy-counting\n  techniques: toy-scale-head" in capsys.readouterr().out

    # its backend, through the Python API and the command line
    ids = [1, 403, 407, 261, 378]
    model = slmkit.load(stories_hf, backend="toy-counting")
    np.testing.assert_array_equal(model.logits(ids), slmkit.load(stories_hf, backend="numpy").logits(ids))
    assert toy.CALLS["matmul"] == 7 * 5 + 1
    assert main(["generate", "-m", str(stories_hf), "Once upon a time", "-n", "8", "--temp", "0",
                 "--backend", "toy-counting"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time, there was a little girl")
    assert toy.CALLS["matmul"] > 7 * 5 + 1

    # its technique, through `slmkit quantize --method`
    out = tmp_path / "scaled"
    assert main(["quantize", str(stories_hf), str(out), "--method", "toy-scale-head"]) == 0
    assert toy.CALLS["apply"] == 1
    scaled = slmkit.load(out, backend="numpy").logits(ids)
    base = slmkit.load(stories_hf, backend="numpy").logits(ids)
    # tied embeddings: the input embedding is halved too, so compare the effect, not a formula
    assert not np.allclose(scaled, base)
    assert slmkit.read_checkpoint(out).quantization["method"] == "toy-scale-head"


def test_broken_plugin_is_skipped_with_a_warning(site, stories_hf, capsys):
    install(site, "broken_slmkit_plugin", "raise ImportError('needs a GPU driver')\n", "broken")
    install(site, "failing_slmkit_plugin", '''
        import slmkit

        @slmkit.hookimpl
        def slmkit_register_backends(register):
            raise RuntimeError("no licence key")
    ''', "failing")
    with pytest.warns(UserWarning) as record:
        listed = {p["name"]: p for p in plugins.list_plugins()}
    messages = " | ".join(str(w.message) for w in record)
    assert "'broken' (broken_slmkit_plugin, from the package broken_slmkit_plugin) was not loaded: "\
           "ImportError: needs a GPU driver" in messages
    assert "'failing' failed in slmkit_register_backends: RuntimeError: no licence key" in messages
    assert "broken" not in listed and listed["failing"]["registers"] == {}
    assert slmkit.load(stories_hf).generate("Once upon a time", max_new_tokens=4, temperature=0)
