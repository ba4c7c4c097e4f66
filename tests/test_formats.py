"""Reading and writing model folders: HF (single and sharded; f32/f16/bf16), slmkit's quantised
folders, and clear errors for bad input. Random models built here; no real data needed."""
import json
import os

import numpy as np
import pytest

from slmkit.checkpoint import Tensor
from slmkit.compress.rtn import RoundToNearest
from slmkit.errors import ModelFormatError, UnsupportedModelError
from slmkit.formats.hf import read_hf, write_hf
from slmkit.formats.safetensors_io import save_safetensors
from slmkit.loading import model_from_checkpoint, read_checkpoint
from slmkit.quant import f32_to_bf16
from utils import ByteTokenizer, random_checkpoint, write_config

IDS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]


def write_plain_hf(ckpt, folder, dtype="f32", shards=1):
    """An HF folder as transformers would save it."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, t in ckpt.tensors.items():
        v = t.to_float32()
        arrays[name] = {"f32": v, "f16": v.astype(np.float16), "bf16": f32_to_bf16(v)}[dtype]
    names = sorted(arrays)
    if shards == 1:
        save_safetensors(arrays, folder / "model.safetensors")
    else:
        weight_map = {}
        for s in range(shards):
            part = {n: arrays[n] for n in names[s::shards]}
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_safetensors(part, folder / fname)
            weight_map.update({n: fname for n in part})
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    write_config(folder, ckpt.config, torch_dtype=dtype)
    if dtype == "bf16":
        # safetensors' numpy writer has no bf16: retag the uint16 tensors in each header.
        for f in folder.glob("*.safetensors"):
            raw = f.read_bytes()
            n = int.from_bytes(raw[:8], "little")
            header = json.loads(raw[8:8 + n])
            for entry in header.values():
                if isinstance(entry, dict) and entry.get("dtype") == "U16":
                    entry["dtype"] = "BF16"
            text = json.dumps(header).encode()
            text += b" " * (-len(text) % 8)
            f.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    return folder


def logits_of(ckpt, backend="numpy"):
    return model_from_checkpoint(ckpt, backend, tokenizer=ByteTokenizer()).logits(IDS)


@pytest.mark.parametrize("dtype,tol", [("f32", 0), ("f16", 1e-2), ("bf16", 5e-2)])
@pytest.mark.parametrize("shards", [1, 3])
def test_hf_folder_round_trip(tmp_path, dtype, tol, shards):
    ckpt = random_checkpoint(seed=1)
    folder = write_plain_hf(ckpt, tmp_path / "m", dtype, shards)
    back = read_hf(folder)
    assert set(back.tensors) == set(ckpt.tensors)
    for name, t in back.tensors.items():
        assert t.wtype == dtype or t.shape == ()
        np.testing.assert_allclose(t.to_float32(), ckpt.tensors[name].to_float32(), rtol=tol, atol=tol)
    np.testing.assert_allclose(logits_of(back), logits_of(ckpt), atol=20 * tol + 1e-9)


def test_qwen2_biases_are_used(tmp_path):
    ckpt = random_checkpoint(seed=2, architecture="Qwen2ForCausalLM", attention_bias=True)
    folder = write_plain_hf(ckpt, tmp_path / "q")
    back = read_hf(folder)
    assert "model.layers.0.self_attn.q_proj.bias" in back.tensors
    with_bias = logits_of(back)
    no_bias = dict(back.tensors)
    for k in [k for k in no_bias if k.endswith(".bias")]:
        no_bias[k] = Tensor.from_float(k, np.zeros(no_bias[k].shape, np.float32))
    assert np.abs(with_bias - logits_of(back.replace(tensors=no_bias))).max() > 1e-3


def test_tied_embeddings(tmp_path):
    ckpt = random_checkpoint(seed=3, tie_word_embeddings=True)
    assert "lm_head.weight" not in ckpt.tensors
    back = read_hf(write_plain_hf(ckpt, tmp_path / "t"))
    np.testing.assert_array_equal(logits_of(back), logits_of(ckpt))


@pytest.mark.parametrize("bits,scheme", [(8, "q8_0"), (4, "q4_0"), (4, "q4_1")])
def test_quantised_folder_reloads_bit_for_bit(tmp_path, bits, scheme):
    src = write_plain_hf(random_checkpoint(seed=4, intermediate_size=84), tmp_path / "src")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    q = RoundToNearest().apply(read_hf(src), bits=bits, scheme=scheme)
    out = write_hf(q, tmp_path / "out")
    back = read_checkpoint(out)
    assert back.quantization["scheme"] == scheme
    assert back.tensors["model.layers.0.mlp.down_proj.weight"].wtype == scheme  # k=84: padded
    assert back.tensors["model.embed_tokens.weight"].wtype == "f32"
    for backend in ("cpu", "numpy"):
        np.testing.assert_array_equal(logits_of(back, backend), logits_of(q, backend))
    # the source folder is untouched
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    q = random_checkpoint(seed=5)
    import slmkit.formats.hf as hf

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(hf, "save_safetensors", broken)
    with pytest.raises(OSError):
        write_hf(q, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    # an existing output survives a failed overwrite
    monkeypatch.undo()
    write_hf(q, tmp_path / "out")
    monkeypatch.setattr(hf, "save_safetensors", broken)
    with pytest.raises(OSError):
        write_hf(q, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert read_hf(tmp_path / "out").tensors.keys() == q.tensors.keys()


def test_unsupported_architecture(tmp_path):
    folder = write_plain_hf(random_checkpoint(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="GPTNeoXForCausalLM"):
        read_checkpoint(folder)


def test_missing_tensor_is_named(tmp_path):
    ckpt = random_checkpoint()
    del ckpt.tensors["model.layers.1.mlp.up_proj.weight"]
    folder = write_plain_hf(ckpt, tmp_path / "m")
    with pytest.raises(ModelFormatError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        model_from_checkpoint(read_checkpoint(folder), "numpy", tokenizer=ByteTokenizer())


def test_shape_contradicting_config_is_named(tmp_path):
    folder = write_plain_hf(random_checkpoint(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match=r"gate_proj\.weight' has shape \[96, 64\], config implies \[128, 64\]"):
        model_from_checkpoint(read_checkpoint(folder), "numpy", tokenizer=ByteTokenizer())


def test_truncated_safetensors(tmp_path):
    folder = write_plain_hf(random_checkpoint(), tmp_path / "m")
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(ModelFormatError, match="truncated"):
        read_checkpoint(folder)


def test_corrupt_safetensors_header(tmp_path):
    folder = write_plain_hf(random_checkpoint(), tmp_path / "m")
    f = folder / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[10:20] = b"\xff" * 10
    f.write_bytes(bytes(raw))
    with pytest.raises(ModelFormatError, match="corrupt safetensors header"):
        read_checkpoint(folder)


def test_truncated_llama2c(tmp_path, stories_llama2c):
    bad = tmp_path / "stories260K.bin"
    bad.write_bytes(stories_llama2c.read_bytes()[: 500_000])
    with pytest.raises(ModelFormatError, match="truncated"):
        read_checkpoint(bad)


def test_not_a_model(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ModelFormatError, match="not a model"):
        read_checkpoint(tmp_path / "x.txt")


def test_quantize_refuses_to_overwrite_source(tmp_path):
    from slmkit.compression import quantize
    src = write_plain_hf(random_checkpoint(), tmp_path / "m")
    with pytest.raises(ValueError, match="overwrite"):
        quantize(src, src)
    with pytest.raises(ValueError, match="inside"):
        quantize(src, src / "q")
    assert set(os.listdir(src)) == {"model.safetensors", "config.json"}
