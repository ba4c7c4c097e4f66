"""GPTQ against a plain float64 reference and against round-to-nearest on the same calibration
inputs; act-order; damping when the Hessian is singular; group 64/128 storage."""
import numpy as np
import pytest

from slmkit.checkpoint import Tensor
from slmkit.compress.gptq import gptq, inverse_hessian_factor, prepare_hessian
from slmkit.compress.groups import (codes_for, dequant, pack, params_for, quantize_tensor,
                                    reference_dequantize)
from utils import calibration_inputs, output_error


def hessian(x: np.ndarray) -> np.ndarray:
    return 2.0 * x.T @ x / x.shape[0]


def values(codes, params, k):
    s, o = params.columns(slice(0, k))
    return dequant(codes, s, o).astype(np.float64)


def reference_gptq(w, h, wtype, group, damp=0.01):
    """GPTQ the plain way (OBQ's update of the full inverse Hessian, one column at a time, no
    lazy blocks, no Cholesky), float64."""
    w = np.array(w, np.float64)
    n, k = w.shape
    hinv = np.linalg.inv(h + damp * np.mean(np.diag(h)) * np.eye(k))
    codes = np.zeros((n, k), np.int64)
    scale = np.zeros((n, -(-k // group)))
    offset = np.zeros_like(scale)
    for j in range(k):
        g = j // group
        if j % group == 0:
            scale[:, g], offset[:, g] = params_for(w[:, j:j + group].astype(np.float32), wtype)
        q = codes_for(w[:, j], scale[:, g], offset[:, g], wtype)
        codes[:, j] = q
        err = (w[:, j] - (q * scale[:, g] + offset[:, g])) / hinv[j, j]
        w[:, j + 1:] -= np.outer(err, hinv[j, j + 1:])
        hinv = hinv - np.outer(hinv[:, j], hinv[j, :]) / hinv[j, j]   # drop column j
    return codes, scale, offset


@pytest.mark.parametrize("wtype,group", [("q4_0", 32), ("q4_1", 64), ("q4_1", 128)])
def test_matches_float64_reference(wtype, group):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((24, 256)) / 16).astype(np.float32)
    h = hessian(calibration_inputs(256))
    codes, params, _ = gptq(w, h, wtype, group, block=64)   # several lazy blocks
    ref_codes, ref_scale, ref_offset = reference_gptq(w, h, wtype, group)
    assert np.mean(codes == ref_codes) > 0.999             # float rounding may flip a tie
    np.testing.assert_allclose(params.scale, ref_scale, rtol=1e-3)
    np.testing.assert_allclose(params.offset, ref_offset, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("wtype,group", [("q4_0", 32), ("q4_1", 64), ("q4_1", 128), ("q8_0", 32)])
def test_output_error_below_round_to_nearest(wtype, group, act_order):
    rng = np.random.default_rng(2)
    k = 256
    w = (rng.standard_normal((48, k)) / 16).astype(np.float32)
    x = calibration_inputs(k, seed=3)
    codes, params, _ = gptq(w, hessian(x), wtype, group, act_order=act_order)
    e_gptq = output_error(x, w, values(codes, params, k))
    e_rtn = output_error(x, w, reference_dequantize(w, wtype, group))
    print(f"\n{wtype} g{group} act_order={act_order}: GPTQ {e_gptq:.4f}, RTN {e_rtn:.4f}")
    assert e_gptq < 0.9 * e_rtn


def test_act_order_is_plain_gptq_on_permuted_columns():
    """With one group per row the group parameters come from the untouched weights, so act-order
    is exactly GPTQ on the columns sorted by decreasing H diagonal, codes put back in place."""
    rng = np.random.default_rng(4)
    k = 128
    w = (rng.standard_normal((16, k)) / 16).astype(np.float32)
    h = hessian(calibration_inputs(k, seed=5))
    order = np.argsort(-np.diag(h), kind="stable")
    assert not np.array_equal(order, np.arange(k))
    codes, params, _ = gptq(w, h, "q4_1", 128, act_order=True)
    plain, plain_params, _ = gptq(w[:, order], h[np.ix_(order, order)], "q4_1", 128)
    assert np.array_equal(codes[:, order], plain)
    np.testing.assert_array_equal(params.scale, plain_params.scale)
    unordered, _, _ = gptq(w, h, "q4_1", 128)
    assert not np.array_equal(codes, unordered)


def test_damping_grows_on_a_singular_hessian():
    """Identical samples: H = 2 x x^T has rank 1. Without damping Cholesky fails; damping grows
    until it works instead of crashing, and says so through the damping it returns."""
    rng = np.random.default_rng(6)
    x = np.repeat(rng.standard_normal((1, 64)), 32, axis=0)       # 32 identical rows
    h = hessian(x)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(h)
    _, used = inverse_hessian_factor(h, 0.0)
    assert used > 0
    w = (rng.standard_normal((8, 64)) / 8).astype(np.float32)
    codes, params, used = gptq(w, h, "q4_0", 32, damp=0.0)
    assert used > 0
    q = values(codes, params, 64)
    assert np.all(np.isfinite(q))
    assert output_error(x, w, q) <= output_error(x, w, reference_dequantize(w, "q4_0", 32)) + 1e-9


def test_inputs_that_are_always_zero():
    rng = np.random.default_rng(7)
    x = calibration_inputs(64, seed=8)
    x[:, 5] = 0
    w = (rng.standard_normal((8, 64)) / 8).astype(np.float32)
    codes, params, _ = gptq(w, hessian(x), "q4_0", 32)
    assert np.all(codes[:, 5] == 0) and np.all(np.isfinite(params.scale))


def test_shared_preparation_gives_the_same_result():
    rng = np.random.default_rng(9)
    h = hessian(calibration_inputs(96, seed=10))
    w = (rng.standard_normal((8, 96)) / 8).astype(np.float32)
    prepared = prepare_hessian(h, act_order=True)
    a = gptq(w, h, "q4_1", 64, act_order=True)
    b = gptq(w, None, "q4_1", 64, prepared=prepared)
    assert np.array_equal(a[0], b[0])


@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q8_0"])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_groups_are_stored_as_blocks_sharing_the_group_scale(wtype, group):
    """A group of 64/128 is 2/4 blocks of 32 that repeat its scale: the kernels' dequantisation
    of the stored blocks equals the reference group quantisation bit for bit; a row shorter than
    the group (and the short last group of a 172-wide row) is one group."""
    rng = np.random.default_rng(11)
    for k in (64, 172, 256):
        w = rng.standard_normal((6, k)).astype(np.float32)
        t = quantize_tensor("w", w, wtype, group)
        assert t.wtype == wtype and t.shape == (6, k)
        np.testing.assert_array_equal(t.to_float32(), reference_dequantize(w, wtype, group))
        blocks = t.data.reshape(6, -1, t.data.shape[1] // -(-k // 32))
        scales = blocks[:, :, :2].copy().view(np.float16)[..., 0]        # [rows, blocks]
        for g0 in range(0, -(-k // 32), group // 32):
            assert np.all(scales[:, g0:g0 + group // 32] == scales[:, g0:g0 + 1])
    if group > 32:   # a coarser grid costs accuracy
        w = rng.standard_normal((64, 256)).astype(np.float32)
        fine = np.abs(reference_dequantize(w, wtype, 32) - w).mean()
        assert np.abs(reference_dequantize(w, wtype, group) - w).mean() > fine


def test_gptq_codes_pack_into_the_values_they_stand_for():
    rng = np.random.default_rng(12)
    w = (rng.standard_normal((8, 172)) / 8).astype(np.float32)
    codes, params, _ = gptq(w, hessian(calibration_inputs(172, seed=13)), "q4_1", 128)
    t = pack("w", codes, params)
    assert isinstance(t, Tensor)
    np.testing.assert_array_equal(t.to_float32(), values(codes, params, 172).astype(np.float32))
