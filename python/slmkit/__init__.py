"""slmkit: make small language models small and fast on ordinary CPUs."""
from ._version import __version__
from .hookspecs import hookimpl
from .loading import load, load_tokenizer, read_checkpoint

__all__ = ["__version__", "hookimpl", "load", "load_tokenizer", "read_checkpoint"]
