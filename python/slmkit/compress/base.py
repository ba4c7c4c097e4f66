"""The interface of a compression technique."""
from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod

from ..checkpoint import Checkpoint

# Weight matrices that linear layers multiply by (everything a technique may compress).
LINEAR_PATTERN = re.compile(r"(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$|^lm_head\.weight$")


class Technique(ABC):
    """A compression technique. `apply` returns a new Checkpoint; the input is left untouched."""

    name: str
    description: str = ""

    @abstractmethod
    def apply(self, ckpt: Checkpoint, **options) -> Checkpoint: ...


def matches_any(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or re.search(p, name) for p in patterns or ())
