"""llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, bytes.

The file holds no token count and no flags: ids 0, 1, 2 are <unk>, BOS, EOS by llama2.c's
convention, SentencePiece's '▁' is stored as a plain space, and bytes the vocabulary lacks are
the tokens '<0xXX>' at id byte + 3."""
from __future__ import annotations

import math
import re
import struct
from pathlib import Path

from ._text_pieces import SpecialTokenSplitter, merge_by_score
from .base import Tokenizer
from .errors import TokenizerLoadError

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_TOKEN_OFFSET = 3
_BYTE_TOKEN = re.compile(rb"<0x([0-9A-Fa-f]{2})>")
# A real tokenizer.bin is small; this bound keeps can_load() from walking a whole checkpoint.
_MAX_FILE_BYTES = 64 << 20


def read_llama2c_vocab(path) -> tuple[list[bytes], list[float]]:
    """Pieces and scores of a tokenizer.bin; raises TokenizerLoadError if it is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise TokenizerLoadError(f"{path}: too large ({size} bytes) for a llama2.c tokenizer")
        data = path.read_bytes()
    except OSError as error:
        raise TokenizerLoadError(f"{path}: cannot read ({error})") from error
    if len(data) < 4:
        raise TokenizerLoadError(f"{path}: too short for a llama2.c tokenizer")
    (max_token_length,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_token_length <= 1024:
        raise TokenizerLoadError(f"{path}: not a llama2.c tokenizer (max token length {max_token_length})")
    pieces: list[bytes] = []
    scores: list[float] = []
    offset = 4
    while offset < len(data):
        if offset + 8 > len(data):
            raise TokenizerLoadError(f"{path}: truncated llama2.c tokenizer (token {len(pieces)})")
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        if not (0 <= length <= max_token_length and offset + length <= len(data)) or not math.isfinite(score):
            raise TokenizerLoadError(f"{path}: not a llama2.c tokenizer (bad entry for token {len(pieces)})")
        pieces.append(data[offset:offset + length])
        scores.append(score)
        offset += length
    if len(pieces) < BYTE_TOKEN_OFFSET + 256:
        raise TokenizerLoadError(f"{path}: only {len(pieces)} tokens; a llama2.c vocabulary has byte tokens 3..258")
    return pieces, scores


def is_llama2c_tokenizer(path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    try:
        read_llama2c_vocab(path)
    except TokenizerLoadError:
        return False
    return True


class Llama2cTokenizer(Tokenizer):
    def __init__(self, pieces: list[bytes], scores: list[float]):
        self.pieces = pieces
        self.vocab_size = len(pieces)
        self.bos_id = BOS_ID
        self.eos_ids = frozenset([EOS_ID])
        self.add_bos = True
        self.chat_template = None
        texts = [piece.decode("utf-8", "surrogateescape") for piece in pieces]
        self.id_of = {text: token_id for token_id, text in enumerate(texts)}
        self.score_of = {text: scores[token_id] for text, token_id in self.id_of.items()}
        # Byte fallback pieces: their text ('<0x41>') never concatenates into a vocabulary piece,
        # so, as in llama2.c, a byte fallback token is never merged further.
        self.byte_pieces = [texts[BYTE_TOKEN_OFFSET + byte] for byte in range(256)]
        self.dummy_prefix = " " if " " in self.id_of else self.byte_pieces[ord(" ")]
        # llama2.c stores BOS/EOS as '\n<s>\n' / '\n</s>\n'; users write the SentencePiece names.
        self.control_splitter = SpecialTokenSplitter({"<unk>": UNK_ID, "<s>": BOS_ID, "</s>": EOS_ID})

    @classmethod
    def from_file(cls, path) -> "Llama2cTokenizer":
        return cls(*read_llama2c_vocab(path))

    def _encode_text(self, text: str) -> list[int]:
        if not text:
            return []
        initial = [self.dummy_prefix]  # a leading space, as SentencePiece adds it
        for char in text:
            if char in self.id_of:
                initial.append(char)
            else:
                initial.extend(self.byte_pieces[byte] for byte in char.encode("utf-8", "surrogateescape"))
        return [self.id_of[piece] for piece in merge_by_score(initial, self.score_of)]

    def special_token_texts(self) -> dict[str, int]:
        return dict(self.control_splitter.token_ids)

    def _encode(self, text: str, parse_special: bool) -> list[int]:
        if not parse_special:
            return self._encode_text(text)
        ids: list[int] = []
        for part in self.control_splitter.split(text):
            ids.extend([part] if isinstance(part, int) else self._encode_text(part))
        return ids

    def decode(self, ids) -> str:
        chunks: list[bytes] = []
        for token_id in ids:
            token_id = int(token_id)
            if token_id in (UNK_ID, BOS_ID, EOS_ID):
                continue
            piece = self.pieces[token_id]
            byte_token = _BYTE_TOKEN.fullmatch(piece)
            chunks.append(bytes([int(byte_token.group(1), 16)]) if byte_token else piece)
        text = b"".join(chunks).decode("utf-8", "replace")
        return text[1:] if text.startswith(" ") else text  # drop the dummy prefix
