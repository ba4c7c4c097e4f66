"""Compression through the registered techniques: in memory (compress) and file to file
(quantize). The source is only read; the output appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint
from .formats.hf import write_hf
from .loading import read_checkpoint
from .plugins import get_technique


def compress(ckpt: Checkpoint, bits: int = 8, group: int = 32, method: str = "rtn",
             scheme: str | None = None, keep=None, calib=None,
             calib_text: str | list[str] | None = None,
             calib_tokens: int = 8192, mixed: float | None = None, act_order: bool = False,
             progress=None, **options) -> Checkpoint:
    """A compressed copy of ckpt. calib: calibration text file(s), each giving an equal share of
    calib_tokens (or calib_text: the text, or a list of texts), used by gptq, awq and mixed
    precision; mixed: the fraction of linear-layer weights kept at int8, chosen by measured
    sensitivity; keep: patterns of tensors left as they are; act_order: GPTQ visits columns by
    decreasing Hessian diagonal; progress(done, total) follows the layers."""
    from .compress.calibrate import CalibrationError
    technique = get_technique(method)
    calibrated = bool(getattr(technique, "needs_calibration", False))
    has_calib = calib is not None or calib_text is not None
    if mixed is not None and not 0 <= mixed <= 1:
        raise ValueError(f"mixed-precision fraction must be in [0, 1], got {mixed}")
    if act_order and method != "gptq":
        raise ValueError(f"act-order is a GPTQ option; method {method!r} has no use for it")
    if (calibrated or mixed) and not has_calib:
        what = f"{method}" if calibrated else "mixed precision"
        raise CalibrationError(f"{what} needs calibration text: pass --calib FILE (calib=)")
    if has_calib and not (calibrated or mixed):
        raise ValueError(f"calibration text is only used by gptq, awq and mixed precision; "
                         f"method {method!r} without --mixed does not use it")
    if calibrated or mixed:
        options.update(calib=calib, calib_text=calib_text, calib_tokens=calib_tokens, mixed=mixed,
                       progress=progress)
        if method == "gptq":
            options["act_order"] = act_order
    return technique.apply(ckpt, bits=bits, group=group, scheme=scheme, keep=keep, **options)


def quantize(src, out, bits: int = 8, group: int = 32, method: str = "rtn", scheme: str | None = None,
             keep=None, calib=None, calib_tokens: int = 8192, mixed: float | None = None,
             act_order: bool = False, progress=None, **options) -> Path:
    """Quantise the model at `src` and write an slmkit folder at `out` (config.json +
    model.safetensors + tokenizer files) that slmkit.load reads back. The arguments mirror
    `slmkit quantize` (see compress())."""
    src_path = Path(src).expanduser()
    if not src_path.exists():
        from . import hub
        src_path = hub.resolve_model(src)       # a catalogue name -> its cached file
    src_path, out_path = src_path.resolve(), Path(out).expanduser().resolve()
    if out_path == src_path or src_path in out_path.parents or (
            src_path.is_dir() and out_path == src_path.parent):
        raise ValueError(f"the output {out_path} would overwrite or sit inside the source {src_path}")
    ckpt = read_checkpoint(src_path)
    compressed = compress(ckpt, bits=bits, group=group, method=method, scheme=scheme, keep=keep,
                          calib=calib, calib_tokens=calib_tokens, mixed=mixed, act_order=act_order,
                          progress=progress, **options)
    return write_hf(compressed, out_path)
