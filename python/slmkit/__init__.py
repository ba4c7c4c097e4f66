"""slmkit: make small language models small and fast on ordinary CPUs."""
from ._version import __version__
from .hookspecs import hookimpl
from .compression import quantize
from .evaluate import evaluate
from .exporting import export
from .loading import load, load_tokenizer, read_checkpoint

__all__ = ["__version__", "evaluate", "export", "hookimpl", "load", "load_tokenizer", "quantize",
           "read_checkpoint"]
