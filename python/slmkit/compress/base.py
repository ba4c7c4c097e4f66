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
    """Whether name matches one of the patterns, each a glob or a regular expression (a glob
    such as "*.down_proj.weight" is not a valid regex; it is then a glob only)."""
    return any(fnmatch.fnmatchcase(name, p) or _regex_search(p, name) for p in patterns or ())


def _regex_search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False
