"""The calibrated quantisers end to end on small random models: mixed precision from measured
sensitivity, --keep, saved folders that reload to the same logits bit for bit, and bad
calibration input."""
import logging

import numpy as np
import pytest

import slmkit
from slmkit.checkpoint import Tensor
from slmkit.compress.calibrate import CalibrationError, calibration_sequences
from slmkit.compress.calibrated import choose_int8, measure_sensitivity
from slmkit.compression import compress
from slmkit.formats.hf import write_hf
from slmkit.loading import model_from_checkpoint
from utils import ByteTokenizer, random_checkpoint

TEXT = ("Once upon a time a small fox lived near the river. Every day it ran to the water.\n\n"
        "The fox saw a bird and the bird sang a song. They became friends and played all day. ") * 8
SENSITIVE = "model.layers.1.mlp.up_proj.weight"


def with_a_sensitive_tensor():
    """A random model where one tensor has a few huge weights per row: they stretch its 4-bit
    grid, so rounding it costs far more (relative to its output) than rounding any other."""
    ckpt = random_checkpoint(seed=5)
    w = ckpt.tensors[SENSITIVE].to_float32()
    w[:, ::16] *= 25
    ckpt.tensors[SENSITIVE] = Tensor.from_float(SENSITIVE, w)
    return ckpt


def test_sensitivity_finds_the_sensitive_tensor():
    ckpt = with_a_sensitive_tensor()
    model = model_from_checkpoint(ckpt, "cpu")
    sens = measure_sensitivity(model, calibration_sequences(model, TEXT, 512, 64), "q4_0", 32)
    assert len(sens) == 7 * ckpt.config.num_hidden_layers
    assert max(sens, key=sens.get) == SENSITIVE


def test_choose_int8_takes_the_most_sensitive_that_fit():
    ckpt = random_checkpoint()
    sens = {"model.layers.0.self_attn.q_proj.weight": 0.5,      # 4096 weights
            "model.layers.0.mlp.up_proj.weight": 0.9,           # 6144
            "model.layers.0.self_attn.k_proj.weight": 0.1,      # 2048
            "model.layers.0.self_attn.v_proj.weight": 0.2}      # 2048 (14336 in all)
    assert choose_int8(sens, ckpt, 0.45) == ["model.layers.0.mlp.up_proj.weight"]
    # the q_proj does not fit beside up_proj; the next ones that fit are taken
    assert choose_int8(sens, ckpt, 0.6) == ["model.layers.0.mlp.up_proj.weight",
                                            "model.layers.0.self_attn.v_proj.weight"]
    assert choose_int8(sens, ckpt, 0) == []
    with pytest.raises(ValueError, match="fraction"):
        choose_int8(sens, ckpt, 1.5)


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_mixed_precision_keeps_the_sensitive_tensor_at_int8(method):
    ckpt = with_a_sensitive_tensor()
    linear = sum(t.numel for n, t in ckpt.tensors.items() if n.startswith("model.layers.")
                             and n.endswith("_proj.weight"))
    fraction = ckpt.tensors[SENSITIVE].numel / linear           # room for exactly that one
    out = compress(ckpt, bits=4, group=32, method=method, mixed=fraction, calib_text=TEXT,
                   calib_tokens=512)
    assert out.quantization["int8_tensors"] == [SENSITIVE, "lm_head.weight"]
    assert out.tensors[SENSITIVE].wtype == "q8_0"
    assert out.tensors["lm_head.weight"].wtype == "q8_0"
    others = {t.wtype for n, t in out.tensors.items() if n.endswith("_proj.weight") and n != SENSITIVE}
    assert others == {"q4_0"}


@pytest.mark.parametrize("method,group", [("rtn", 32), ("rtn", 128), ("gptq", 64), ("awq", 128)])
def test_keep_leaves_tensors_as_they_are(method, group):
    ckpt = random_checkpoint(seed=6)
    calib = {"calib_text": TEXT, "calib_tokens": 512} if method != "rtn" else {}
    out = compress(ckpt, bits=4, group=group, method=method, keep=["*.mlp.down_proj.weight"], **calib)
    for i in range(2):
        name = f"model.layers.{i}.mlp.down_proj.weight"
        assert out.tensors[name].wtype == "f32"
        np.testing.assert_array_equal(out.tensors[name].to_float32(), ckpt.tensors[name].to_float32())
        assert out.tensors[f"model.layers.{i}.mlp.up_proj.weight"].wtype in ("q4_0", "q4_1")


@pytest.mark.parametrize("options", [
    dict(method="rtn", bits=4, group=128),
    dict(method="gptq", bits=4, group=128, act_order=True),
    dict(method="gptq", bits=8, group=32),
    dict(method="awq", bits=4, group=64),
    dict(method="rtn", bits=4, group=32, mixed=0.2),
])
def test_saved_folder_reloads_to_the_same_logits(options, tmp_path):
    ckpt = random_checkpoint(seed=7)
    calib = {"calib_text": TEXT, "calib_tokens": 512} if options["method"] != "rtn" or "mixed" in options else {}
    out = compress(ckpt, **options, **calib)
    ids = ByteTokenizer().encode(TEXT[:80])
    in_memory = model_from_checkpoint(out, "cpu").logits(ids)
    write_hf(out, tmp_path / "q")
    reloaded = slmkit.load(tmp_path / "q", tokenizer=ByteTokenizer())
    assert np.array_equal(reloaded.logits(ids), in_memory)
    assert reloaded.checkpoint.quantization["method"] == options["method"]


# ---- bad calibration input -------------------------------------------------------------------

def test_calibration_text_problems_are_clear(tmp_path):
    ckpt = random_checkpoint()
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n ")
    with pytest.raises(CalibrationError, match="empty"):
        compress(ckpt, bits=4, method="gptq", calib=empty)
    with pytest.raises(CalibrationError, match="not found"):
        compress(ckpt, bits=4, method="gptq", calib=tmp_path / "missing.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(CalibrationError, match="not UTF-8"):
        compress(ckpt, bits=4, method="awq", calib=latin1)
    with pytest.raises(CalibrationError, match="needs calibration text"):
        compress(ckpt, bits=4, method="gptq")
    with pytest.raises(CalibrationError, match="at least 16"):
        compress(ckpt, bits=4, method="gptq", calib_text="tiny")
    with pytest.raises(ValueError, match="only used by"):
        compress(ckpt, bits=4, method="rtn", calib_text=TEXT)
    with pytest.raises(ValueError, match="act-order"):
        compress(ckpt, bits=4, method="awq", calib_text=TEXT, act_order=True)


def test_fewer_tokens_than_one_window_uses_one_shorter_sequence(caplog):
    ckpt = random_checkpoint()
    text = "A short calibration text of a few dozen bytes."
    with caplog.at_level(logging.WARNING, logger="slmkit.compress"):
        out = compress(ckpt, bits=4, method="gptq", calib_text=text)
    assert "fewer than one window" in caplog.text
    assert out.quantization["calibration_tokens"] == len(text) + 1          # bytes + BOS


class NoSpecialTokens(ByteTokenizer):
    """No BOS (and, like every slmkit tokenizer, no pad token): calibration never pads."""

    def __init__(self):
        super().__init__()
        self.bos_id = None


def test_tokenizer_without_bos_or_pad():
    ckpt = random_checkpoint().replace(tokenizer=NoSpecialTokens())
    model = model_from_checkpoint(ckpt, "cpu")
    seqs = calibration_sequences(model, TEXT, 300, 64)
    assert len(seqs) == 300 // 64 and all(len(s) == 64 for s in seqs)
    assert seqs[0] == list(NoSpecialTokens().encode(TEXT[:64]))
    out = compress(ckpt, bits=4, method="awq", calib_text=TEXT, calib_tokens=300)
    assert out.tensors["model.layers.0.self_attn.q_proj.weight"].wtype == "q4_0"


class Templated(ByteTokenizer):
    chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                     "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_calibration_goes_through_the_chat_template():
    model = model_from_checkpoint(random_checkpoint().replace(tokenizer=Templated()), "cpu")
    seqs = calibration_sequences(model, TEXT, 400, 128)
    text = Templated().decode(seqs[0])
    assert text.startswith("<|user|>\n<|assistant|>Once upon a time")
    plain = calibration_sequences(model, TEXT, 400, 128, chat_template=False)
    assert Templated().decode(plain[0]).startswith("Once upon a time")


# ---- folders quantised from a GGUF ------------------------------------------------------------

def test_vocabulary_only_gguf_keeps_the_tokenizer(tmp_path):
    from slmkit.formats.gguf_write import write_vocab_gguf
    from slmkit.tokenizers.gguf_vocab import GGUFTokenizer
    from utils import shared_path
    source = shared_path("tokenizers", "vectors", "ggml-vocab-gpt-2.gguf")
    copy = write_vocab_gguf(source, tmp_path / "tokenizer.gguf")
    a, b = GGUFTokenizer.from_file(source), GGUFTokenizer.from_file(copy)
    text = "Hello world! Ünïcödé, numbers 12345 and   spaces."
    assert b.encode(text) == a.encode(text) and b.vocab_size == a.vocab_size


def test_smollm2_folder_reloads_with_its_tokenizer(smollm2_path, tmp_path):
    """A GGUF model's folder keeps the vocabulary (and chat template) as tokenizer.gguf, and
    gives the logits of the in-memory checkpoint bit for bit."""
    from slmkit.loading import read_checkpoint
    ckpt = read_checkpoint(smollm2_path)
    out = compress(ckpt, bits=8)
    write_hf(out, tmp_path / "q8")
    original, reloaded = slmkit.load(smollm2_path), slmkit.load(tmp_path / "q8")
    assert reloaded.tokenizer.chat_template == original.tokenizer.chat_template
    ids = original.encode("The capital of France is")
    assert reloaded.encode("The capital of France is") == ids
    assert np.array_equal(reloaded.logits(ids), model_from_checkpoint(out, "cpu").logits(ids))
