"""Compressed variants of one model, named by short specs (what `slmkit compare` takes):

    f32                     the source with every tensor dequantised to float32: the baseline
    METHOD BITS [-gG] [-SCHEME] [-ao] [-mixedF]
        METHOD  rtn | gptq | awq        BITS  8 | 4
        -gG     group size 32, 64 or 128 (default 32)
        -SCHEME q8_0, q4_0 or q4_1 (default: q8_0; q4_0 at group 32, q4_1 at wider groups)
        -ao     GPTQ with act-order
        -mixedF keep the fraction F of the linear weights at int8, chosen by sensitivity
    e.g. rtn8, rtn4-g128, gptq4-g128-ao, awq4-g128, gptq4-g128-mixed0.25
    PATH                    an existing model (folder or file), evaluated as it is
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import Checkpoint

BASELINE = "f32"
SPEC = re.compile(r"^(rtn|gptq|awq)(4|8)((?:-[a-z0-9_.]+)*)$")
CALIBRATED_METHODS = ("gptq", "awq")


@dataclass
class Variant:
    name: str
    method: str | None = None                 # None: the float baseline or an existing model
    options: dict = field(default_factory=dict)
    path: Path | None = None                  # an existing model

    @property
    def calibrated(self) -> bool:
        return self.method in CALIBRATED_METHODS or bool(self.options.get("mixed"))

    @property
    def format(self) -> tuple | None:
        """(bits, group, block format): variants with equal formats have equal sizes."""
        if self.method is None:
            return None
        from .compress.calibrated import default_scheme
        bits, group = self.options["bits"], self.options.get("group", 32)
        return bits, group, default_scheme(bits, group, self.options.get("scheme"))


def parse_variant(spec: str) -> Variant:
    spec = spec.strip()
    if spec == BASELINE:
        return Variant(BASELINE)
    m = SPEC.match(spec)
    if m is None:
        path = Path(spec).expanduser()
        if path.exists():
            return Variant(path.name or spec, path=path)
        raise ValueError(f"variant {spec!r}: expected f32, an existing model path, or "
                         f"METHOD BITS[-gGROUP][-SCHEME][-ao][-mixedF] such as rtn8, gptq4-g128")
    method, bits, rest = m.group(1), int(m.group(2)), m.group(3)
    options: dict = {"bits": bits}
    for part in filter(None, rest.split("-")):
        if re.fullmatch(r"g\d+", part):
            options["group"] = int(part[1:])
        elif part in ("q8_0", "q4_0", "q4_1"):
            options["scheme"] = part
        elif part == "ao":
            options["act_order"] = True
        elif re.fullmatch(r"mixed\d*\.?\d+", part):
            options["mixed"] = float(part[5:])
        else:
            raise ValueError(f"variant {spec!r}: unknown part {part!r} (expected gGROUP, a block "
                             f"format, ao or mixedF)")
    return Variant(spec, method, options)


def build(variant: Variant, source: Checkpoint, calib_text: str | list[str] | None = None,
          calib_tokens: int = 8192, progress=None, threads: int | None = None) -> Checkpoint:
    """The variant's checkpoint, made from source."""
    if variant.path is not None:
        from .loading import read_checkpoint
        return read_checkpoint(variant.path)
    if variant.method is None:
        from .compress.calibrated import float_checkpoint
        return float_checkpoint(source)
    from .compression import compress
    calib = {"calib_text": calib_text, "calib_tokens": calib_tokens} if variant.calibrated else {}
    return compress(source, method=variant.method, progress=progress, threads=threads,
                    **variant.options, **calib)
