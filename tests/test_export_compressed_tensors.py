"""compressed-tensors (llm-compressor "pack-quantized"): slmkit's writer and reader.

The `compressed-tensors` package needs torch, so it is not used here: files are checked against
the public spec as written in formats/compressed_tensors.py, with a dequantiser written in this
test from the spec (element j of a run at bit j·bits, stored value = signed value + 2^(bits-1),
zero points packed along the output dim, value = (q - zp)·scale)."""
import json
import warnings

import numpy as np
import pytest

import slmkit
from slmkit.cli import main
from slmkit.compress.rtn import RoundToNearest
from slmkit.formats.compressed_tensors import pack_int32, unpack_int32, write_compressed_tensors
from slmkit.formats.safetensors_io import SafetensorsFile
from slmkit.loading import model_from_checkpoint, read_checkpoint
from test_import_gptq_awq import make_folder
from utils import ByteTokenizer, random_checkpoint

IDS = [1, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110]


def spec_dequantise(folder):
    """{module.weight: float64 values} from a pack-quantized folder, by the spec's definition."""
    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    scheme_of = {}
    for group in config["config_groups"].values():
        for target in group["targets"]:
            scheme_of[target] = group["weights"]
    st = SafetensorsFile(folder / "model.safetensors")
    out = {}
    for name in st.keys():
        if not name.endswith(".weight_packed"):
            continue
        base = name[: -len(".weight_packed")]
        w = scheme_of[base]
        bits, offset, per_word = w["num_bits"], 1 << (w["num_bits"] - 1), 32 // w["num_bits"]
        n, k = (int(v) for v in st.get(f"{base}.weight_shape"))
        words = st.get(name).view(np.uint32)
        q = np.zeros((n, k), np.int64)
        for j in range(k):
            q[:, j] = ((words[:, j // per_word] >> np.uint32((j % per_word) * bits)) & ((1 << bits) - 1)).astype(np.int64) - offset
        scale = st.get(f"{base}.weight_scale").astype(np.float64)
        zp = np.zeros_like(scale, np.int64)
        if not w["symmetric"]:
            zwords = st.get(f"{base}.weight_zero_point").view(np.uint32)
            for r in range(n):
                zp[r] = ((zwords[r // per_word] >> np.uint32((r % per_word) * bits)) & ((1 << bits) - 1)).astype(np.int64) - offset
        group = np.arange(k) // w["group_size"]
        out[f"{base}.weight"] = (q - zp[:, group]) * scale[:, group]
    return out, config


def test_packing_follows_the_spec_example():
    # the spec's own example: int8 values [1, 2] -> unsigned [129, 130] -> one word 33409
    assert pack_int32(np.array([[129, 130]]), 8).tolist() == [[33409]]
    codes = np.random.default_rng(0).integers(0, 16, (3, 20))
    assert np.array_equal(unpack_int32(pack_int32(codes, 4), 4, 20), codes)


@pytest.mark.parametrize("scheme", ["q4_0", "q8_0"])
def test_symmetric_blocks_round_trip_exactly(tmp_path, scheme):
    src = random_checkpoint(seed=11, intermediate_size=128, tie_word_embeddings=True)
    ckpt = RoundToNearest().apply(src, bits=8 if scheme == "q8_0" else 4, group=32, scheme=scheme)
    folder = write_compressed_tensors(ckpt, tmp_path / "ct")
    values, config = spec_dequantise(folder)
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    (group,) = config["config_groups"].values()
    assert group["weights"] == {**group["weights"], "num_bits": 8 if scheme == "q8_0" else 4,
                                "type": "int", "symmetric": True, "strategy": "group", "group_size": 32}
    assert config["ignore"] == ["lm_head"]            # a head stays in floats (here: tied)
    linears = [n for n in ckpt.tensors if n.endswith("_proj.weight")]
    assert sorted(values) == sorted(linears)
    for name in linears:                               # the spec's values are slmkit's values
        assert np.array_equal(values[name], ckpt[name].to_float32().astype(np.float64)), name
    back = read_checkpoint(folder)
    for name in linears:
        assert back[name].wtype == scheme and np.array_equal(np.asarray(back[name].data),
                                                              np.asarray(ckpt[name].data)), name
    st = SafetensorsFile(folder / "model.safetensors")
    base = "model.layers.0.mlp.down_proj"
    assert st.dtype(f"{base}.weight_packed") == "I32"
    assert st.shape(f"{base}.weight_packed") == (64, 128 // (4 if scheme == "q8_0" else 8))
    assert st.dtype(f"{base}.weight_scale") == "F16" and st.shape(f"{base}.weight_scale") == (64, 4)
    assert f"{base}.weight_zero_point" not in st.keys()
    ref = model_from_checkpoint(ckpt, "cpu", threads=2, tokenizer=ByteTokenizer()).logits(IDS)
    got = model_from_checkpoint(back, "cpu", threads=2, tokenizer=ByteTokenizer()).logits(IDS)
    assert np.array_equal(got, ref)


def test_q4_1_from_gptq_round_trips_exactly(tmp_path):
    folder, refs, _ = make_folder(tmp_path, "gptq", group=32, sym=False)
    ckpt = read_checkpoint(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # representable: no warning
        out = write_compressed_tensors(ckpt, tmp_path / "ct")
    values, config = spec_dequantise(out)
    (group,) = config["config_groups"].values()
    assert group["weights"]["symmetric"] is False
    st = SafetensorsFile(out / "model.safetensors")
    assert st.shape("model.layers.0.self_attn.q_proj.weight_zero_point") == (64 // 8, 2)
    back = read_checkpoint(out)
    for name, ref in refs.items():
        assert np.array_equal(np.asarray(back[name].data), np.asarray(ckpt[name].data)), name
        # against the original GPTQ values: exact but for fp16 rounding of q4_1's m
        assert np.abs(values[name] - ref).max() <= 1e-6 * np.abs(ref).max(), name


def test_q4_1_with_free_minimums_states_and_keeps_its_error_bound(tmp_path):
    ckpt = RoundToNearest().apply(random_checkpoint(seed=12, intermediate_size=128), bits=4,
                                  group=32, scheme="q4_1")
    with pytest.warns(UserWarning, match="zero points are integers, so values move by up to"):
        out = write_compressed_tensors(ckpt, tmp_path / "ct")
    values, _ = spec_dequantise(out)
    from slmkit.formats.int_blocks import codes_from_blocks
    for name, v in values.items():
        t = ckpt[name]
        _, d, _ = codes_from_blocks(t.data, "q4_1", t.shape[1])
        step = np.repeat(d.astype(np.float64), 32, axis=1)
        assert np.all(np.abs(v - t.to_float32()) <= 0.5 * step + 1e-7), name   # half a step


def test_interleaved_source_gets_rotate_half_rows(stories_llama2c, tmp_path):
    q8 = RoundToNearest().apply(read_checkpoint(stories_llama2c), bits=8, group=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")               # down_proj rows of 172: written as f16
        out = write_compressed_tensors(q8, tmp_path / "ct")
    config = json.loads((out / "config.json").read_text())
    assert "model.layers.0.mlp.down_proj" in config["quantization_config"]["ignore"]
    back = read_checkpoint(out)
    assert not back.config.rope_interleaved
    ids = [1, 403, 407, 261, 378]
    ref = model_from_checkpoint(q8, "numpy").logits(ids)
    got = model_from_checkpoint(back, "numpy").logits(ids)
    # only the f16 rounding of the 172-wide down_proj rows differs
    assert np.abs(got - ref).max() <= 2e-3 * np.abs(ref).max()


def test_unsupported_compressed_tensors_are_refused(tmp_path):
    ckpt = RoundToNearest().apply(random_checkpoint(seed=13), bits=4, group=32, scheme="q4_0")
    out = write_compressed_tensors(ckpt, tmp_path / "ct")
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"]["format"] = "float-quantized"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(slmkit.errors.UnsupportedModelError, match="float-quantized"):
        read_checkpoint(out)
    with pytest.raises(slmkit.errors.UnsupportedModelError, match="quantise the model first"):
        write_compressed_tensors(random_checkpoint(seed=14), tmp_path / "ct2")


def test_cli_export_compressed_tensors(stories_hf, tmp_path, capsys):
    q4 = tmp_path / "q4"
    assert main(["quantize", str(stories_hf), str(q4), "--bits", "4", "--scheme", "q4_0"]) == 0
    out = tmp_path / "ct"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(q4), str(out), "--to", "compressed-tensors"]) == 0
    assert "wrote" in capsys.readouterr().out
    model = slmkit.load(out, threads=2)
    assert model.tokenizer.encode("Once upon a time") == [1, 403, 407, 261, 378]
    ref = slmkit.load(q4, threads=2).logits([1, 403, 407, 261, 378])
    got = model.logits([1, 403, 407, 261, 378])
    assert np.abs(got - ref).max() <= 0.02 * np.abs(ref).max()   # 172-wide rows now f16 floats


def spec_pack(unsigned, bits):
    """Pack unsigned codes [r, c] along c from the spec's words (element j at bit j·bits)."""
    per_word = 32 // bits
    words = np.zeros((unsigned.shape[0], -(-unsigned.shape[1] // per_word)), np.uint32)
    for j in range(unsigned.shape[1]):
        words[:, j // per_word] |= unsigned[:, j].astype(np.uint32) << np.uint32((j % per_word) * bits)
    return words.view(np.int32)


@pytest.mark.parametrize("bits,strategy,group,wtype", [(4, "group", 64, "q4_1"), (8, "channel", None, "f16")])
def test_reads_asymmetric_files_built_from_the_spec(tmp_path, bits, strategy, group, wtype):
    from slmkit.formats.safetensors_io import save_safetensors
    from test_import_gptq_awq import LINEARS, quantise
    from utils import write_config
    src = random_checkpoint(seed=15, intermediate_size=128, tie_word_embeddings=True)
    arrays, refs, targets = {}, {}, []
    for name, t in src.tensors.items():
        if name.split(".")[-2] not in LINEARS:
            arrays[name] = t.to_float32()
            continue
        w = t.to_float32()
        codes, scales, zeros, _, ref = quantise(w, bits, group or w.shape[1], sym=False)
        base = name[: -len(".weight")]
        arrays[f"{base}.weight_packed"] = spec_pack(codes, bits)            # signed + offset = codes
        arrays[f"{base}.weight_scale"] = scales.T.astype(np.float16)       # [n, groups]
        arrays[f"{base}.weight_zero_point"] = spec_pack(zeros, bits).T.copy()  # along outputs
        arrays[f"{base}.weight_shape"] = np.array(w.shape, np.int64)
        refs[name], targets = ref, targets + [base]
    weights = {"num_bits": bits, "type": "int", "symmetric": False, "strategy": strategy,
               "group_size": group}
    folder = tmp_path / "ct"
    folder.mkdir()
    write_config(folder, src.config, quantization_config={
        "quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights}}})
    save_safetensors(arrays, folder / "model.safetensors")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckpt = read_checkpoint(folder)
    assert any("dequantised to f16" in str(c.message) for c in caught) == (wtype == "f16")
    for name, ref in refs.items():
        assert ckpt[name].wtype == wtype
        bound = 2.0 ** -10 * np.abs(ref).max()      # fp16 rounding of m (|m| <= range) or of values
        assert np.abs(ckpt[name].to_float32() - ref).max() <= bound, name
