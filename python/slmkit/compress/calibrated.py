"""Calibrated quantisation: GPTQ and AWQ over a layer-by-layer calibration pass, mixed precision
from measured per-tensor sensitivity, and round-to-nearest at any group size.

All of them write the block formats the kernels run (q8_0 / q4_0 / q4_1), with group 64/128
realised as blocks that repeat the group's scale (see groups.py).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..checkpoint import Checkpoint, Tensor
from ..quant import BITS_PER_WEIGHT
from . import awq as awq_mod
from .base import LINEAR_PATTERN, Technique, matches_any
from .calibrate import (CalibrationError, LayerContext, calibration_sequences, layerwise,
                        peak_rss_mb, read_calibration_text)
from .groups import check_group, effective_bits, pack, quantize_tensor
from .gptq import gptq, prepare_hessian

log = logging.getLogger("slmkit.compress")

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def default_scheme(bits: int, group: int, scheme: str | None) -> str:
    """q8_0 for 8 bits; for 4 bits q4_0 at group 32 (ggml's usual) and q4_1 for wider groups,
    where a minimum per group pays for itself."""
    from .rtn import quantization_type
    if scheme is None and bits == 4:
        scheme = "q4_0" if group == 32 else "q4_1"
    return quantization_type(bits, scheme)


def float_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    """The checkpoint with every tensor as float32 (the baseline a quantiser starts from)."""
    tensors = {n: t if t.wtype == "f32" else Tensor.from_float(n, t.to_float32())
               for n, t in ckpt.tensors.items()}
    return ckpt.replace(tensors=tensors)


def relative_error(w: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    ref = float(((w.astype(np.float32) @ h) * w).sum())
    return awq_mod.output_error(w, q, h) / max(ref, 1e-30)


class Plan:
    """Which format each linear weight gets: quantised at `wtype`, at int8 (mixed precision) or
    left as it is (keep patterns)."""

    def __init__(self, ckpt: Checkpoint, wtype: str, keep=None, int8=()):
        self.wtype, self.keep, self.int8 = wtype, keep, set(int8)
        self.names = [n for n in ckpt.tensors if LINEAR_PATTERN.search(n)]

    def wtype_of(self, name: str) -> str | None:
        if matches_any(name, self.keep):
            return None
        return "q8_0" if name in self.int8 else self.wtype


def measure_sensitivity(model, sequences, wtype: str, group: int, progress=None) -> dict[str, float]:
    """Per linear tensor: the relative output error (over the calibration set) when only that
    tensor is rounded to `wtype` — measured on the float model, layer by layer."""
    sens: dict[str, float] = {}

    def measure(ctx: LayerContext):
        for sub in LINEARS:
            w = ctx.weights[sub]
            h = ctx.stats[sub].hessian.astype(np.float32)
            sens[ctx.names[sub]] = relative_error(w, awq_mod.rtn_values(w, wtype, group), h)
        return {}

    layerwise(model, sequences, measure, progress, sequential=False)
    return sens


def choose_int8(sensitivity: dict[str, float], ckpt: Checkpoint, fraction: float) -> list[str]:
    """The most sensitive tensors, most sensitive first, that fit in `fraction` of the
    linear-layer parameters (one too large for what is left is passed over)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"mixed-precision fraction must be in [0, 1], got {fraction}")
    total = sum(ckpt.tensors[n].numel for n in sensitivity)
    chosen, used = [], 0
    for name in sorted(sensitivity, key=sensitivity.get, reverse=True):
        if used + ckpt.tensors[name].numel > fraction * total:
            continue
        chosen.append(name)
        used += ckpt.tensors[name].numel
    return chosen


class CalibratedQuantizer(Technique):
    """Shared frame: calibration text -> sequences -> (sensitivity) -> layer-by-layer rewrite."""

    needs_calibration = True

    def apply(self, ckpt: Checkpoint, bits: int = 4, group: int = 128, scheme: str | None = None,
              keep=None, calib=None, calib_text: str | list[str] | None = None,
              calib_tokens: int = 8192, seq_len: int = 512, act_order: bool = False,
              mixed: float | None = None, damp: float = 0.01, clip_search: bool = True,
              threads: int | None = None, chat_template: bool = True, progress=None,
              **_) -> Checkpoint:
        from ..loading import model_from_checkpoint
        t0 = time.perf_counter()
        check_group(group)
        wtype = default_scheme(bits, group, scheme)
        needs_calib = self.needs_calibration or mixed
        info = {"method": self.name, "bits": bits, "group_size": group, "scheme": wtype,
                "storage_block": 32, "effective_bits_per_weight": effective_bits(wtype, group),
                "stored_bits_per_weight": BITS_PER_WEIGHT[wtype]}
        base = float_checkpoint(ckpt)
        model = sequences = None
        if needs_calib:
            if calib_text is None:
                if calib is None:
                    raise CalibrationError(f"{self.name} needs calibration text: pass --calib FILE")
                calib_text = read_calibration_text(calib)
            model = model_from_checkpoint(base, "cpu", threads)
            sequences = calibration_sequences(model, calib_text, calib_tokens, seq_len, chat_template)
            info["calibration_tokens"] = sum(len(s) for s in sequences)
        int8 = []
        if mixed:
            sens = measure_sensitivity(model, sequences, wtype, group, progress)
            int8 = choose_int8(sens, ckpt, mixed)
            info["mixed_fraction"] = mixed
            info["int8_tensors"] = int8
            # the output head (where it is its own tensor) is kept at int8 too
            if "lm_head.weight" in ckpt.tensors:
                int8.append("lm_head.weight")
        plan = Plan(ckpt, wtype, keep, int8)
        rewritten = self.quantize_layers(base, ckpt, model, sequences, plan, group, info,
                                         act_order=act_order, damp=damp, clip_search=clip_search,
                                         progress=progress)
        # tensors outside the decoder layers (an untied output head): round-to-nearest
        for name in plan.names:
            if not name.startswith("model.layers.") and plan.wtype_of(name):
                rewritten[name] = quantize_weight(name, base.tensors[name].to_float32(),
                                                  plan.wtype_of(name), group)
        tensors = dict(ckpt.tensors)       # everything else keeps its original storage
        tensors.update(rewritten)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        info["peak_rss_mb"] = round(peak_rss_mb())
        return ckpt.replace(tensors=tensors, quantization=info)

    def quantize_layers(self, base, ckpt, model, sequences, plan, group, info, **options):
        raise NotImplementedError


def _collect(into: dict, new: dict) -> dict:
    into.update(new)
    return new


def quantize_weight(name, w, wtype, group, h=None, clip_search=False) -> Tensor:
    """Round-to-nearest into blocks; int8 always at group 32 (q8_0's own block)."""
    g = 32 if wtype == "q8_0" else group
    clip = awq_mod.clip_search(w, h, wtype, g) if clip_search and h is not None else 1.0
    return quantize_tensor(name, w, wtype, g, clip)


class RTNGroups(CalibratedQuantizer):
    """Round-to-nearest at group 32/64/128; calibration only for mixed precision."""

    name = "rtn"
    needs_calibration = False

    def quantize_layers(self, base, ckpt, model, sequences, plan, group, info, **_):
        tensors = {}
        for name in plan.names:
            if name.startswith("model.layers.") and plan.wtype_of(name):
                tensors[name] = quantize_weight(name, base.tensors[name].to_float32(),
                                                plan.wtype_of(name), group)
        return tensors


class GPTQ(CalibratedQuantizer):
    name = "gptq"
    description = "GPTQ: Hessian-aware rounding from calibration activations (int4/int8 blocks)"

    def quantize_layers(self, base, ckpt, model, sequences, plan, group, info, act_order=False,
                        damp=0.01, progress=None, **_):
        damping = []

        def rewrite(ctx: LayerContext):
            out, prepared = {}, {}
            for sub in LINEARS:
                name = ctx.names[sub]
                wtype = plan.wtype_of(name)
                if wtype is None:
                    continue
                g = 32 if wtype == "q8_0" else group
                stats = ctx.stats[sub]        # one object for the linears sharing an input
                if id(stats) not in prepared:
                    prepared[id(stats)] = prepare_hessian(stats.hessian, act_order, damp)
                codes, params, used = gptq(ctx.weights[sub], None, wtype, g,
                                           prepared=prepared[id(stats)])
                damping.append(used)
                out[name] = pack(name, codes, params)
            return out

        rewritten = {}
        _, report = layerwise(model, sequences, lambda ctx: _collect(rewritten, rewrite(ctx)),
                              progress)
        log.info("GPTQ %s", report)
        info.update(act_order=act_order, damp=damp, max_damp_used=max(damping, default=damp),
                    calibration_seconds=round(report.seconds, 2))
        return rewritten


# AWQ's scale groups: key (see awq.fold_scales) -> the linears sharing that input. In search
# order: o before q/k/v (folding o's scale changes v rows), down before gate/up (changes up rows).
AWQ_GROUPS = (("o", ("self_attn.o_proj",)), ("q", LINEARS[:3]), ("down", ("mlp.down_proj",)),
              ("gate", LINEARS[4:6]))
AWQ_KEY_OF = {sub: key for key, subs in AWQ_GROUPS for sub in subs}


def awq_scale_layer(ctx: LayerContext, wtype_of, group: int) -> tuple[dict, dict, list[float]]:
    """Search AWQ scales for one layer and fold them into a copy of its float weights.
    wtype_of(tensor name) gives each linear's format (None: kept as it is, not searched for).
    Returns the folded weights (by short name), the scales by key, and the alphas chosen.
    The folded float layer computes what the original did."""
    cfg = ctx.config
    wts = {k: v.copy() for k, v in ctx.weights.items()}
    scales, alphas = {}, []
    for key, subs in AWQ_GROUPS:
        quantised = [s for s in subs if wtype_of(ctx.names[s])]
        if not quantised:
            continue
        stats = ctx.stats[subs[0]]
        x = stats.mean_abs
        if key == "o":
            x = awq_mod.tie_heads(x, cfg.num_attention_heads, cfg.num_key_value_heads)
        wtypes = [wtype_of(ctx.names[q]) for q in quantised]     # int8 ones in mixed precision
        groups = [32 if t == "q8_0" else group for t in wtypes]
        salience = awq_mod.weight_salience([wts[q] for q in quantised], min(groups))
        if key == "o":
            salience = awq_mod.tie_heads(salience, cfg.num_attention_heads, cfg.num_key_value_heads)
        s, alpha, _err, _base = awq_mod.search_scale([wts[q] for q in quantised], x, stats.hessian,
                                                     wtypes, groups, salience=salience)
        alphas.append(alpha)
        scales[key] = s
        awq_mod.fold_scales(wts, {key: s}, cfg.num_attention_heads, cfg.num_key_value_heads)
    return wts, scales, alphas


class AWQ(CalibratedQuantizer):
    name = "awq"
    description = "AWQ: activation-aware per-channel scales folded into the preceding op, then rounding"

    def quantize_layers(self, base, ckpt, model, sequences, plan, group, info, clip_search=True,
                        progress=None, **_):
        alphas = []

        def rewrite(ctx: LayerContext):
            wts, scales, chosen = awq_scale_layer(ctx, plan.wtype_of, group)
            alphas.extend(chosen)
            out = {}
            for sub, name in ctx.names.items():
                if sub in LINEARS and plan.wtype_of(name):
                    h = ctx.stats[sub].hessian
                    s = scales.get(AWQ_KEY_OF[sub])
                    if s is not None:       # the Gram matrix of the scaled input x / s
                        inv = 1.0 / s.astype(np.float64)
                        h = h * inv[:, None] * inv[None, :]
                    out[name] = quantize_weight(name, wts[sub], plan.wtype_of(name), group,
                                                h.astype(np.float32), clip_search)
                elif not np.array_equal(wts[sub], ctx.weights[sub]):   # folded norms, kept weights
                    t = ckpt.tensors[name]
                    out[name] = Tensor.from_float(name, wts[sub], t.wtype if t.wtype in ("f32", "f16", "bf16") else "f32")
            return out

        rewritten = {}
        # as AutoAWQ: each layer's inputs are the float model's (the folded scales leave the
        # float function as it was), so one pass per layer
        _, report = layerwise(model, sequences, lambda ctx: _collect(rewritten, rewrite(ctx)),
                              progress, sequential=False)
        log.info("AWQ %s", report)
        info.update(clip_search=clip_search, alpha_mean=round(float(np.mean(alphas)), 3) if alphas else None,
                    calibration_seconds=round(report.seconds, 2))
        return rewritten
