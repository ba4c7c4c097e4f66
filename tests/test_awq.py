"""AWQ: folding the scales leaves the float model's function unchanged; the searched scales
lower a layer's output error below round-to-nearest's on the same calibration inputs."""
import numpy as np
import pytest

from slmkit.checkpoint import Tensor
from slmkit.compress import awq
from slmkit.compress.calibrate import calibration_sequences, layerwise
from slmkit.compress.calibrated import awq_scale_layer
from slmkit.loading import model_from_checkpoint
from utils import calibration_inputs, output_error, random_checkpoint

TEXT = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
        "How vexingly quick daft zebras jump! ") * 12


def loud_channels_checkpoint():
    """A random GQA model whose norms make a few input channels loud, as trained models do
    (otherwise the search has no reason to scale anything)."""
    ckpt = random_checkpoint(seed=3)
    rng = np.random.default_rng(4)
    for name, t in list(ckpt.tensors.items()):
        if name.endswith("layernorm.weight"):
            w = t.to_float32()
            w[rng.choice(w.shape[0], 4, replace=False)] *= 8
            ckpt.tensors[name] = Tensor.from_float(name, w)
    return ckpt


def test_folding_the_scales_keeps_the_float_model():
    ckpt = loud_channels_checkpoint()
    model = model_from_checkpoint(ckpt, "cpu")
    ids = model.tokenizer.encode(TEXT[:100])
    before = model_from_checkpoint(ckpt, "numpy").logits(ids)
    searched = []

    def fold(ctx):
        wts, scales, _ = awq_scale_layer(ctx, lambda name: "q4_0", 32)
        searched.extend(scales.values())
        return {ctx.names[sub]: Tensor.from_float(ctx.names[sub], w) for sub, w in wts.items()}

    folded, _ = layerwise(model, calibration_sequences(model, TEXT, 512, 64), fold)
    assert len(searched) == 4 * ckpt.config.num_hidden_layers     # o, q/k/v, down, gate/up
    assert max(float(s.max() / s.min()) for s in searched) > 2     # the scales do something
    after = model_from_checkpoint(ckpt.replace(tensors=folded), "numpy").logits(ids)
    assert np.max(np.abs(after - before)) < 1e-5 * np.max(np.abs(before))


def test_o_proj_scales_must_be_tied_across_shared_kv_heads():
    ckpt = random_checkpoint()
    wts = {n.split(".", 3)[3].rsplit(".", 1)[0]: t.to_float32() for n, t in ckpt.tensors.items()
           if n.startswith("model.layers.0.")}
    s = np.linspace(0.5, 2, 64).astype(np.float32)        # differs between the 2 heads of a kv head
    with pytest.raises(ValueError, match="tied"):
        awq.fold_scales(wts, {"o": s}, n_heads=4, n_kv_heads=2)
    tied = awq.tie_heads(s, 4, 2)
    awq.fold_scales(wts, {"o": tied}, n_heads=4, n_kv_heads=2)


@pytest.mark.parametrize("wtype,group", [("q4_0", 32), ("q4_1", 128)])
def test_search_lowers_output_error_below_round_to_nearest(wtype, group):
    rng = np.random.default_rng(5)
    k = 256
    x = calibration_inputs(k, seed=6)
    w = (rng.standard_normal((64, k)) / 16).astype(np.float32)
    h = (2 * x.T @ x / len(x)).astype(np.float32)
    s, alpha, err, base_err = awq.search_scale([w], np.abs(x).mean(axis=0), h, wtype, group)
    assert alpha > 0 and err < base_err
    scaled = awq.rtn_values(w * s, wtype, group) / s
    plain = awq.rtn_values(w, wtype, group)
    e_awq, e_rtn = output_error(x, w, scaled), output_error(x, w, plain)
    print(f"\n{wtype} g{group}: alpha {alpha}, AWQ {e_awq:.4f}, RTN {e_rtn:.4f}")
    assert e_awq < 0.9 * e_rtn


def test_clip_search_never_worsens_a_group():
    rng = np.random.default_rng(7)
    x = calibration_inputs(128, seed=8)
    h = (2 * x.T @ x / len(x)).astype(np.float32)
    w = rng.standard_normal((32, 128)).astype(np.float32)
    w[:, 3] *= 6                                            # an outlier column stretches the grid
    clip = awq.clip_search(w, h, "q4_1", 32)
    assert clip.shape == (32, 4) and clip.min() < 1.0
    from slmkit.compress.groups import quantize_tensor
    clipped = quantize_tensor("w", w, "q4_1", 32, clip).to_float32()
    assert output_error(x, w, clipped) <= output_error(x, w, awq.rtn_values(w, "q4_1", 32))
