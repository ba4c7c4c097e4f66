"""Built-in model formats: Hugging Face folders (and slmkit's quantised ones), llama2.c files, GGUF files."""
from pathlib import Path

from ..hookspecs import hookimpl


def _hf_can(path):
    from ..formats.hf import is_hf_folder
    return is_hf_folder(Path(path))


def _hf_read(path):
    from ..formats.hf import read_hf
    return read_hf(path)


def _llama2c_can(path):
    from ..formats.llama2c import looks_like_llama2c
    p = Path(path)
    return p.suffix == ".bin" and looks_like_llama2c(p)


def _llama2c_read(path):
    from ..formats.llama2c import read_llama2c
    return read_llama2c(path)


def _gguf_can(path):
    from ..formats.gguf import is_gguf_file
    return is_gguf_file(path)


def _gguf_read(path):
    from ..formats.gguf import read_gguf
    return read_gguf(path)


@hookimpl
def slmkit_register_formats(register):
    register("hf", _hf_can, _hf_read)
    register("llama2c", _llama2c_can, _llama2c_read)
    register("gguf", _gguf_can, _gguf_read)
