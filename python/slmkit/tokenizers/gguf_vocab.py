"""Tokenizers described by GGUF metadata (tokenizer.ggml.*), read with the `gguf` package.

Behaviour follows llama.cpp, whose test vectors are the reference:
  "gpt2"  byte-level BPE; the text is first cut by the regexes that tokenizer.ggml.pre names.
  "llama" SentencePiece-style: spaces become U+2581, a leading U+2581 is added (add_space_prefix),
          pieces merge greedily by score, characters outside the vocabulary become <0xXX> tokens.
Control tokens are cut out of the text only with parse_special; user-defined tokens always are
(as llama.cpp and Hugging Face do)."""
from __future__ import annotations

import warnings
from pathlib import Path

import gguf
from tokenizers import Regex, Tokenizer as HFBackend, models, pre_tokenizers

from ._text_pieces import END_OF_TURN_TEXTS, SpecialTokenSplitter, byte_level_alphabet, merge_by_score
from .base import Tokenizer
from .errors import TokenizerLoadError

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

SPACE_MARK = "\u2581"

_GPT2_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CASELESS_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3_WORDS = (_CASELESS_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_WORDS = (_CASELESS_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O_WORDS = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CASELESS_CONTRACTIONS + "?"
                r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CASELESS_CONTRACTIONS + "?"
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Pre-tokenizer families: the regexes llama.cpp applies one after another (each cuts the pieces
# the previous one left; text between matches stays a piece), and whether a word that is already
# a vocabulary token skips merging (llama.cpp's ignore_merges, set for Llama 3).
_PRE_TOKENIZER_FAMILIES = {
    # llama.cpp's fallback for BPE vocabularies without a known name
    "default": ([r"[\p{P}\$\+<=>\^~\|]+", _GPT2_WORDS, r"\p{N}+", r"[0-9][0-9][0-9]"], False),
    "gpt2": ([_GPT2_WORDS], False),
    "starcoder": ([r"\p{N}", _GPT2_WORDS], False),  # GPT-2's, with every digit on its own
    "llama3": ([_LLAMA3_WORDS], True),
    "qwen2": ([_QWEN2_WORDS], False),
    "gpt4o": ([_GPT4O_WORDS], False),
}

# tokenizer.ggml.pre names (as llama.cpp reads them) -> family above
PRE_TOKENIZER_NAMES = {
    "default": "default",
    "gpt-2": "gpt2", "phi-2": "gpt2", "mpt": "gpt2", "olmo": "gpt2", "jina-es": "gpt2", "jina-de": "gpt2",
    "jina-v2-es": "gpt2", "jina-v2-de": "gpt2", "jais": "gpt2",
    "starcoder": "starcoder", "smollm": "starcoder", "refact": "starcoder", "command-r": "starcoder",
    "codeshell": "starcoder", "exaone": "starcoder", "minerva-7b": "starcoder",
    "llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3", "falcon3": "llama3",
    "pixtral": "llama3", "dbrx": "llama3", "smaug-bpe": "llama3",
    "qwen2": "qwen2", "stablelm2": "qwen2", "deepseek-r1-qwen": "qwen2", "megrez": "qwen2",
    "gpt-4o": "gpt4o", "llama4": "gpt4o",
}



class GGUFMetadata:
    """Typed access to a GGUFReader's key/value fields (arrays read straight from their parts:
    ReaderField.contents() is slow on 50k-entry arrays)."""

    def __init__(self, reader: gguf.GGUFReader, source: str):
        self.reader = reader
        self.source = source

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    def scalar(self, key: str, default=None):
        field = self.reader.fields.get(key)
        if field is None or not field.data:
            return default
        value = field.parts[field.data[0]]
        if field.types and field.types[0] == gguf.GGUFValueType.STRING:
            return bytes(value).decode("utf-8")
        return value.tolist()[0]

    def strings(self, key: str) -> list[str] | None:
        field = self.reader.fields.get(key)
        if field is None:
            return None
        return [bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data]

    def numbers(self, key: str) -> list | None:
        field = self.reader.fields.get(key)
        if field is None:
            return None
        return [field.parts[i].tolist()[0] for i in field.data]


class GGUFTokenizer(Tokenizer):
    """Tokenizer from GGUF metadata; build with from_file(path) or from_reader(reader)."""

    def __init__(self, metadata: GGUFMetadata):
        source = metadata.source
        self.source = source
        self.model_kind = metadata.scalar("tokenizer.ggml.model")
        if self.model_kind is None:
            raise TokenizerLoadError(f"{source}: no tokenizer.ggml.model key; the GGUF holds no vocabulary")
        tokens = metadata.strings("tokenizer.ggml.tokens")
        if not tokens:
            raise TokenizerLoadError(f"{source}: no tokenizer.ggml.tokens")
        self.tokens = tokens
        self.vocab_size = len(tokens)
        types = metadata.numbers("tokenizer.ggml.token_type")
        self.token_types = types if types is not None else [NORMAL] * len(tokens)
        if len(self.token_types) != len(tokens):
            raise TokenizerLoadError(f"{source}: {len(self.token_types)} token types for {len(tokens)} tokens")
        # Later duplicates win, as in llama.cpp's text -> id map.
        self.id_of = {text: token_id for token_id, text in enumerate(tokens)}

        self.bos_id = metadata.scalar("tokenizer.ggml.bos_token_id")
        end_ids = {metadata.scalar(f"tokenizer.ggml.{name}_token_id") for name in ("eos", "eot", "eom")}
        end_ids |= {i for i, text in enumerate(tokens)
                    if self.token_types[i] == CONTROL and text in END_OF_TURN_TEXTS}
        self.eos_ids = frozenset(i for i in end_ids if i is not None and 0 <= i < len(tokens))
        self.unk_id = metadata.scalar("tokenizer.ggml.unknown_token_id")
        self.chat_template = metadata.scalar("tokenizer.chat_template")

        if self.model_kind == "llama":
            self._init_sentencepiece_style(metadata)
            default_add_bos = True
        elif self.model_kind == "gpt2":
            self._init_byte_level_bpe(metadata)
            default_add_bos = False
        else:
            raise TokenizerLoadError(
                f"{source}: tokenizer.ggml.model {self.model_kind!r} is not supported (supported: 'llama', 'gpt2')")
        self.add_bos = bool(metadata.scalar("tokenizer.ggml.add_bos_token", default_add_bos))
        if self.bos_id is None:
            self.add_bos = False

        always_split = {t: i for i, t in enumerate(tokens) if self.token_types[i] == USER_DEFINED}
        special = {t: i for i, t in enumerate(tokens) if self.token_types[i] in (CONTROL, UNKNOWN)}
        self.user_token_splitter = SpecialTokenSplitter(always_split)
        self.special_token_splitter = SpecialTokenSplitter({**special, **always_split})

    # construction

    @classmethod
    def from_reader(cls, reader: gguf.GGUFReader, source: str | None = None) -> "GGUFTokenizer":
        """From an already-opened GGUF (e.g. a model file the loader has open)."""
        if source is None:
            source = str(getattr(getattr(reader, "data", None), "filename", None) or "GGUF reader")
        return cls(GGUFMetadata(reader, source))

    @classmethod
    def from_file(cls, path) -> "GGUFTokenizer":
        path = Path(path)
        try:
            reader = gguf.GGUFReader(str(path), "r")
        except Exception as error:  # the reader raises ValueError, struct errors, IndexError...
            raise TokenizerLoadError(f"{path}: not a readable GGUF file ({type(error).__name__}: {error})") from error
        return cls(GGUFMetadata(reader, str(path)))

    def _init_sentencepiece_style(self, metadata: GGUFMetadata) -> None:
        scores = metadata.numbers("tokenizer.ggml.scores")
        if scores is None or len(scores) != self.vocab_size:
            raise TokenizerLoadError(f"{self.source}: a 'llama' vocabulary needs tokenizer.ggml.scores per token")
        self.score_of = {text: scores[token_id] for text, token_id in self.id_of.items()}
        self.add_space_prefix = bool(metadata.scalar("tokenizer.ggml.add_space_prefix", True))
        self.byte_token_ids = [self.id_of.get(f"<0x{byte:02X}>", self.unk_id) for byte in range(256)]

    def _init_byte_level_bpe(self, metadata: GGUFMetadata) -> None:
        pre_name = metadata.scalar("tokenizer.ggml.pre")
        if pre_name is None:
            warnings.warn(f"{self.source}: no tokenizer.ggml.pre; using llama.cpp's 'default' pre-tokenizer")
            pre_name = "default"
        family = PRE_TOKENIZER_NAMES.get(pre_name)
        if family is None:
            raise TokenizerLoadError(
                f"{self.source}: unknown pre-tokenizer tokenizer.ggml.pre = {pre_name!r}; tokenizing with another "
                f"one would give different ids. Known: {', '.join(sorted(PRE_TOKENIZER_NAMES))}")
        self.pre_tokenizer_name = pre_name
        regexes, ignore_merges = _PRE_TOKENIZER_FAMILIES[family]

        merges = metadata.strings("tokenizer.ggml.merges")
        if merges is None:
            raise TokenizerLoadError(f"{self.source}: a 'gpt2' vocabulary needs tokenizer.ggml.merges")
        merge_pairs = []
        for line in merges:
            left, _, right = line.partition(" ")
            merge_pairs.append((left, right))
        try:
            model = models.BPE(vocab=dict(self.id_of), merges=merge_pairs, ignore_merges=ignore_merges)
        except Exception as error:
            raise TokenizerLoadError(f"{self.source}: inconsistent BPE vocabulary/merges ({error})") from error
        backend = HFBackend(model)
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated") for regex in regexes]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        self.bpe_backend = backend
        self.char_to_byte = {char: byte for byte, char in byte_level_alphabet().items()}

    # encoding

    def special_token_texts(self) -> dict[str, int]:
        always = self.user_token_splitter.token_ids
        return {t: i for t, i in self.special_token_splitter.token_ids.items() if t not in always}

    def _encode(self, text: str, parse_special: bool) -> list[int]:
        splitter = self.special_token_splitter if parse_special else self.user_token_splitter
        parts = splitter.split(text)
        ids: list[int] = []
        after_special = True  # SentencePiece-style vocabularies prefix a space to text after a token
        for part in parts:
            if isinstance(part, int):
                ids.append(part)
                after_special = True
                continue
            if self.model_kind == "llama":
                ids.extend(self._encode_sentencepiece_style(part, add_prefix=after_special))
            else:
                ids.extend(self.bpe_backend.encode(part, add_special_tokens=False).ids)
            after_special = False
        return ids

    def _encode_sentencepiece_style(self, text: str, add_prefix: bool) -> list[int]:
        if self.add_space_prefix and add_prefix:
            text = " " + text
        pieces = merge_by_score(list(text.replace(" ", SPACE_MARK)), self.score_of)
        ids: list[int] = []
        for piece in pieces:
            token_id = self.id_of.get(piece)
            if token_id is not None:
                ids.append(token_id)
            else:
                ids.extend(self.byte_token_ids[byte] for byte in piece.encode("utf-8", "surrogateescape"))
        return [i for i in ids if i is not None]  # None: a vocabulary with neither <0xXX> nor <unk>

    # decoding

    def _token_bytes(self, token_id: int) -> bytes:
        token_type = self.token_types[token_id]
        text = self.tokens[token_id]
        if token_type in (CONTROL, UNUSED):
            return b""
        if self.model_kind == "llama":
            if token_type == BYTE:
                return bytes([int(text[3:5], 16)])
            if token_type == UNKNOWN:
                return " \u2047 ".encode()
            return text.replace(SPACE_MARK, " ").encode("utf-8", "surrogateescape")
        if token_type == USER_DEFINED:
            return text.encode("utf-8", "surrogateescape")  # stored as raw text, not byte-level
        char_to_byte = self.char_to_byte
        if all(c in char_to_byte for c in text):
            return bytes(char_to_byte[c] for c in text)
        return text.encode("utf-8", "surrogateescape")  # not byte-level text: emit it as it is

    def decode(self, ids) -> str:
        text = b"".join(self._token_bytes(int(i)) for i in ids).decode("utf-8", "replace")
        if self.model_kind == "llama" and self.add_space_prefix and text.startswith(" "):
            text = text[1:]  # the prefix that encoding added
        return text
