"""slmkit: make small language models small and fast on ordinary CPUs."""
from ._version import __version__
from .hookspecs import hookimpl
from .exporting import export
from .loading import load, load_tokenizer, read_checkpoint

__all__ = ["__version__", "export", "hookimpl", "load", "load_tokenizer", "read_checkpoint"]
