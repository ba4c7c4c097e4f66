"""Round-to-nearest quantisation into the block formats (int8: q8_0; int4: q4_0 or q4_1)."""
from __future__ import annotations

from ..checkpoint import Checkpoint, Tensor
from ..quant import BLOCK_SIZE
from .base import LINEAR_PATTERN, Technique, matches_any

SCHEMES = {8: ("q8_0",), 4: ("q4_0", "q4_1")}


def quantization_type(bits: int, scheme: str | None) -> str:
    if bits not in SCHEMES:
        raise ValueError(f"bits must be 8 or 4, got {bits}")
    scheme = scheme or SCHEMES[bits][0]
    if scheme not in SCHEMES[bits]:
        raise ValueError(f"scheme {scheme!r} is not a {bits}-bit format; choose {SCHEMES[bits]}")
    return scheme


class RoundToNearest(Technique):
    name = "rtn"
    description = "round-to-nearest weight quantisation to int8 (q8_0) or int4 (q4_0/q4_1) blocks"

    def apply(self, ckpt: Checkpoint, bits: int = 8, group: int = BLOCK_SIZE, scheme: str | None = None,
              keep: list[str] | None = None, quantize_embeddings: bool = False, **options) -> Checkpoint:
        """Quantise every linear weight. Tied embedding/output weights stay in their precision
        unless quantize_embeddings; names matching a `keep` pattern (glob or regex) stay too."""
        if group != BLOCK_SIZE or options.get("mixed"):
            # wider groups (blocks sharing a scale) and calibrated mixed precision
            from .calibrated import RTNGroups
            return RTNGroups().apply(ckpt, bits=bits, group=group, scheme=scheme, keep=keep, **options)
        wtype = quantization_type(bits, scheme)
        tensors = {}
        for name, t in ckpt.tensors.items():
            wanted = LINEAR_PATTERN.search(name) or (
                name == "model.embed_tokens.weight" and quantize_embeddings)
            if wanted and not matches_any(name, keep) and t.wtype != wtype:
                t = Tensor.from_float(name, t.to_float32(), wtype)
            tensors[name] = t
        info = {"method": self.name, "bits": bits, "group_size": group, "scheme": wtype}
        return ckpt.replace(tensors=tensors, quantization=info)
