"""Tokenizers: every kind of vocabulary file slmkit reads, behind one small interface.

load_tokenizer(path) picks the reader from what the path is. The readers are listed in
BUILTIN_TOKENIZERS as (name, can_load, load) entries, in order of preference, so that a plugin
system can add its own entries to the same kind of list."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from .base import Tokenizer
from .errors import TokenizerLoadError

GGUF_MAGIC = b"GGUF"


class TokenizerKind(NamedTuple):
    name: str
    can_load: Callable[[Path], bool]  # cheap check on a file or folder; never raises
    load: Callable[[Path], Tokenizer]  # raises TokenizerLoadError naming the file


def _has_magic(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


def _is_gguf(path: Path) -> bool:
    return path.is_file() and _has_magic(path, GGUF_MAGIC)


def _is_hf_json(path: Path) -> bool:
    if path.is_dir():
        return (path / "tokenizer.json").is_file()
    return path.is_file() and path.name.endswith("tokenizer.json")


def _is_sentencepiece_model(path: Path) -> bool:
    if path.is_dir():
        return (path / "tokenizer.model").is_file()
    return path.is_file() and path.suffix == ".model"


def _is_gpt2_files(path: Path) -> bool:
    from .gpt2_files import gpt2_file_pair
    return gpt2_file_pair(path) is not None


def _is_llama2c(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".bin":
        return False
    from .llama2c import is_llama2c_tokenizer
    return is_llama2c_tokenizer(path)


def _load_gguf(path: Path) -> Tokenizer:
    from .gguf_vocab import GGUFTokenizer
    return GGUFTokenizer.from_file(path)


def _load_hf_json(path: Path) -> Tokenizer:
    from .hf_json import load_hf_json
    return load_hf_json(path)


def _load_sentencepiece(path: Path) -> Tokenizer:
    from .sentencepiece import load_sentencepiece
    return load_sentencepiece(path)


def _load_gpt2_files(path: Path) -> Tokenizer:
    from .gpt2_files import load_gpt2_files
    return load_gpt2_files(path)


def _load_llama2c(path: Path) -> Tokenizer:
    from .llama2c import Llama2cTokenizer
    return Llama2cTokenizer.from_file(path)


# Order matters for folders: tokenizer.json is preferred over tokenizer.model, then GPT-2 files.
BUILTIN_TOKENIZERS: list[TokenizerKind] = [
    TokenizerKind("gguf", _is_gguf, _load_gguf),
    TokenizerKind("hf-tokenizer-json", _is_hf_json, _load_hf_json),
    TokenizerKind("sentencepiece", _is_sentencepiece_model, _load_sentencepiece),
    TokenizerKind("gpt2-encoder-json", _is_gpt2_files, _load_gpt2_files),
    TokenizerKind("llama2c-bin", _is_llama2c, _load_llama2c),
]


def find_tokenizer_kind(path, kinds: list[TokenizerKind] | None = None) -> TokenizerKind | None:
    """The first kind that says it can read path, or None."""
    path = Path(path)
    for kind in BUILTIN_TOKENIZERS if kinds is None else kinds:
        if kind.can_load(path):
            return kind
    return None


def load_tokenizer(path, kinds: list[TokenizerKind] | None = None) -> Tokenizer:
    """Load the tokenizer at path: a .gguf file (a model or a vocabulary-only file), a tokenizer.json,
    a SentencePiece tokenizer.model, a llama2.c tokenizer .bin, an encoder.json + vocab.bpe folder,
    or a model folder holding one of these (tokenizer.json preferred, then tokenizer.model)."""
    path = Path(path)
    if not path.exists():
        raise TokenizerLoadError(f"{path}: no such file or folder")
    kind = find_tokenizer_kind(path, kinds)
    if kind is None:
        if path.is_dir():
            raise TokenizerLoadError(
                f"{path}: no tokenizer found in this folder (looked for tokenizer.json, tokenizer.model, "
                f"encoder.json + vocab.bpe)")
        raise TokenizerLoadError(
            f"{path}: not a tokenizer file slmkit knows (GGUF, tokenizer.json, SentencePiece .model, "
            f"llama2.c tokenizer .bin, encoder.json/vocab.bpe)")
    try:
        return kind.load(path)
    except TokenizerLoadError:
        raise
    except Exception as error:  # anything else a reader throws still names the file
        raise TokenizerLoadError(f"{path}: cannot load as {kind.name} ({type(error).__name__}: {error})") from error


__all__ = ["Tokenizer", "TokenizerLoadError", "TokenizerKind", "BUILTIN_TOKENIZERS",
           "find_tokenizer_kind", "load_tokenizer"]
