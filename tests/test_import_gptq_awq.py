"""Reading GPTQ and AWQ folders: small random models packed here from the formats' definitions
(loops written from the spec, not our unpacking code), read back, compared with the dequantised
reference values (float64) and with a float model of those values."""
import json

import numpy as np
import pytest

from slmkit.formats.gptq_awq import unpack_awq, unpack_gptq
from slmkit.formats.safetensors_io import save_safetensors
from slmkit.loading import model_from_checkpoint, read_checkpoint
from slmkit.checkpoint import Tensor
from utils import ByteTokenizer, random_checkpoint, write_config

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IDS = [1, 84, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114, 111, 119, 110]


def quantise(w, bits, group, sym, rng_perm=None):
    """Codes, scales (fp16 values), zeros per group and the input -> group map, for w [n, k]."""
    n, k = w.shape
    g_idx = np.arange(k) // group if rng_perm is None else rng_perm
    groups = k // group
    top = (1 << bits) - 1
    scales = np.zeros((groups, n), np.float32)
    zeros = np.zeros((groups, n), np.int64)
    codes = np.zeros((n, k), np.int64)
    for g in range(groups):
        cols = g_idx == g
        x = w[:, cols]
        if sym:
            s = np.abs(x).max(1) / (top // 2) + 1e-8
            z = np.full(n, (top + 1) // 2)
        else:
            lo, hi = np.minimum(x.min(1), 0), np.maximum(x.max(1), 0)
            s = (hi - lo) / top + 1e-8
            z = np.clip(np.round(-lo / s), 0, top)
        s = s.astype(np.float16).astype(np.float32)
        scales[g], zeros[g] = s, z
        codes[:, cols] = np.clip(np.round(x / s[:, None]) + z[:, None], 0, top)
    ref = (codes - zeros[g_idx].T) * scales[g_idx].T.astype(np.float64)
    return codes, scales, zeros, g_idx, ref


def pack_gptq(codes, zeros, bits, v1):
    n, k = codes.shape
    p = 32 // bits
    qweight = np.zeros((k // p, n), np.uint32)
    for i in range(k // p):
        for j in range(p):
            qweight[i] |= codes[:, i * p + j].astype(np.uint32) << np.uint32(j * bits)
    stored = (zeros - 1 if v1 else zeros) & ((1 << bits) - 1)
    qzeros = np.zeros((zeros.shape[0], n // p), np.uint32)
    for c in range(n // p):
        for j in range(p):
            qzeros[:, c] |= stored[:, c * p + j].astype(np.uint32) << np.uint32(j * bits)
    return qweight.view(np.int32), qzeros.view(np.int32)


def pack_awq(codes, zeros):
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    def pack(cols):                                  # cols [r, n] -> [r, n/8]
        out = np.zeros((cols.shape[0], cols.shape[1] // 8), np.uint32)
        for c in range(cols.shape[1] // 8):
            for i in range(8):
                out[:, c] |= cols[:, c * 8 + order[i]].astype(np.uint32) << np.uint32(4 * i)
        return out.view(np.int32)
    return pack(codes.T), pack(zeros)


def make_folder(tmp_path, method, bits=4, group=32, sym=False, v1=True, act_order=False, seed=0):
    """A quantised folder, plus the float64 reference weights it stands for."""
    src = random_checkpoint(seed=seed, intermediate_size=128)
    rng = np.random.default_rng(seed + 100)
    arrays, refs = {}, {}
    for name, t in src.tensors.items():
        proj = name.split(".")[-2]
        if proj not in LINEARS:
            arrays[name] = t.to_float32().astype(np.float16)
            continue
        w = t.to_float32()
        perm = rng.permutation(np.arange(w.shape[1]) // group) if act_order else None
        codes, scales, zeros, g_idx, ref = quantise(w, bits, group, sym, perm)
        base = name[: -len(".weight")]
        if method == "gptq":
            qweight, qzeros = pack_gptq(codes, zeros, bits, v1)
            arrays[f"{base}.g_idx"] = g_idx.astype(np.int32)
        else:
            qweight, qzeros = pack_awq(codes, zeros)
        arrays[f"{base}.qweight"], arrays[f"{base}.qzeros"] = qweight, qzeros
        arrays[f"{base}.scales"] = scales.astype(np.float16)
        arrays[f"{base}.bias"] = np.zeros(w.shape[0], np.float16)
        refs[name] = ref
    qc = {"quant_method": method, "bits": bits, "group_size": group}
    if method == "gptq":
        qc.update(checkpoint_format="gptq" if v1 else "gptq_v2", desc_act=act_order, sym=sym)
    else:
        qc.update(version="gemm", zero_point=True)
    folder = tmp_path / f"{method}-{bits}-{group}-{sym}-{v1}-{act_order}"
    folder.mkdir()
    write_config(folder, src.config, quantization_config=qc, torch_dtype="float16")
    save_safetensors(arrays, folder / "model.safetensors")
    return folder, refs, src


def reference_logits(src, refs, ckpt):
    """numpy-backend logits of the float model whose weights are the reference values."""
    tensors = {n: (Tensor.from_float(n, refs[n].astype(np.float32)) if n in refs else ckpt[n])
               for n in ckpt.tensors}
    model = model_from_checkpoint(ckpt.replace(tensors=tensors), "numpy", tokenizer=ByteTokenizer())
    return model.logits(IDS)


def test_unpacking_known_words():
    # GPTQ: word 0x76543210 in qweight[0, c] holds inputs 0..7 of output c as codes 0..7
    qweight = np.array([[0x76543210, 0x10101010]], np.uint32).view(np.int32)
    codes, zeros = unpack_gptq(qweight, np.zeros((1, 1), np.int32), 4, v1=True)
    assert codes.shape == (2, 8) and codes[0].tolist() == list(range(8))
    assert codes[1].tolist() == [0, 1] * 4
    assert zeros.shape == (1, 8) and np.all(zeros == 1)          # v1 stores z - 1
    # AWQ: nibble i holds column (0, 2, 4, 6, 1, 3, 5, 7)[i]
    codes, zeros = unpack_awq(np.array([[0x76543210]], np.uint32).view(np.int32),
                              np.array([[0x76543210]], np.uint32).view(np.int32))
    assert codes[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7] and zeros[0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("method,v1,sym,group", [
    ("gptq", True, False, 32), ("gptq", False, False, 64), ("gptq", True, True, 64),
    ("awq", None, False, 32), ("awq", None, False, 64)])
def test_exact_conversion_to_blocks(tmp_path, method, v1, sym, group):
    folder, refs, src = make_folder(tmp_path, method, group=group, sym=sym, v1=v1)
    ckpt = read_checkpoint(folder)
    assert ckpt.quantization["converted_from"]["quant_method"] == method
    for name, ref in refs.items():
        t = ckpt[name]
        assert t.wtype == ("q4_0" if sym else "q4_1"), name
        err = np.abs(t.to_float32() - ref).max()
        if sym:
            assert err <= 1e-6 * np.abs(ref).max(), name                 # exact
        else:
            # only m = -z·s is rounded to fp16: at most half an fp16 ulp of |m|
            assert err <= 2.0 ** -11 * (15 * np.abs(ref).max()) + 1e-7, name
    assert not any(n.endswith(".bias") for n in ckpt.tensors)            # all-zero biases dropped
    ref_logits = reference_logits(src, refs, ckpt)
    got = model_from_checkpoint(ckpt, "numpy", tokenizer=ByteTokenizer()).logits(IDS)
    assert np.abs(got - ref_logits).max() <= 2e-3 * np.abs(ref_logits).max()
    # the C kernels run the blocks (8-bit activations): close to the reference too
    cpu = model_from_checkpoint(ckpt, "cpu", threads=2, tokenizer=ByteTokenizer()).logits(IDS)
    assert np.abs(cpu - ref_logits).max() <= 0.03 * np.abs(ref_logits).max()


def test_gptq_v1_v2_and_awq_give_the_same_blocks(tmp_path):
    a = read_checkpoint(make_folder(tmp_path, "gptq", v1=True, seed=3)[0])
    b = read_checkpoint(make_folder(tmp_path, "gptq", v1=False, seed=3)[0])
    c = read_checkpoint(make_folder(tmp_path, "awq", seed=3)[0])
    for name in a.tensors:
        assert np.array_equal(np.asarray(a[name].data), np.asarray(b[name].data)), name
        assert np.array_equal(np.asarray(a[name].data), np.asarray(c[name].data)), name


def test_gptq_8bit_symmetric_is_q8_0(tmp_path):
    folder, refs, _ = make_folder(tmp_path, "gptq", bits=8, group=32, sym=True, v1=False)
    ckpt = read_checkpoint(folder)
    for name, ref in refs.items():
        assert ckpt[name].wtype == "q8_0"
        assert np.abs(ckpt[name].to_float32() - ref).max() <= 1e-6 * np.abs(ref).max()


def test_act_order_is_dequantised_with_a_warning(tmp_path):
    folder, refs, src = make_folder(tmp_path, "gptq", act_order=True, group=32)
    with pytest.warns(UserWarning, match="dequantised to f16"):
        ckpt = read_checkpoint(folder)
    for name, ref in refs.items():
        assert ckpt[name].wtype == "f16"
        assert np.abs(ckpt[name].to_float32() - ref).max() <= 2.0 ** -11 * np.abs(ref).max()


def test_unsupported_variants_are_refused_clearly(tmp_path):
    from slmkit.errors import UnsupportedModelError
    folder, _, _ = make_folder(tmp_path, "awq")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"]["version"] = "gemv"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="gemv"):
        read_checkpoint(folder)
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="marlin"):
        read_checkpoint(folder)
