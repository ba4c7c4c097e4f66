"""SentencePiece `tokenizer.model` files, through the `sentencepiece` library."""
from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm

from ._text_pieces import SpecialTokenSplitter
from .base import Tokenizer
from .errors import TokenizerLoadError


class SentencePieceTokenizer(Tokenizer):
    def __init__(self, processor: spm.SentencePieceProcessor, chat_template: str | None = None,
                 add_bos: bool = True):
        self.processor = processor
        self.vocab_size = processor.vocab_size()
        self.bos_id = processor.bos_id() if processor.bos_id() >= 0 else None
        self.eos_ids = frozenset([processor.eos_id()] if processor.eos_id() >= 0 else [])
        self.add_bos = add_bos
        self.chat_template = chat_template
        # SentencePiece never reads control pieces out of text; with parse_special we cut them out.
        control = {processor.id_to_piece(i): i for i in range(self.vocab_size) if processor.is_control(i)}
        self.control_splitter = SpecialTokenSplitter(control)

    def special_token_texts(self) -> dict[str, int]:
        return dict(self.control_splitter.token_ids)

    def _encode(self, text: str, parse_special: bool) -> list[int]:
        if not parse_special:
            return self.processor.encode(text)
        ids: list[int] = []
        for part in self.control_splitter.split(text):
            if isinstance(part, int):
                ids.append(part)
            else:
                ids.extend(self.processor.encode(part))
        return ids

    def decode(self, ids) -> str:
        return self.processor.decode([int(i) for i in ids])  # control pieces decode to nothing


def load_sentencepiece(path) -> SentencePieceTokenizer:
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.model"
    processor = spm.SentencePieceProcessor()
    try:
        processor.load(str(path))
    except Exception as error:
        raise TokenizerLoadError(f"{path}: not a readable SentencePiece model ({error})") from error

    # A Hugging Face folder may hold a chat template and the add_bos flag next to the model.
    chat_template, add_bos = None, True
    config_file = path.parent / "tokenizer_config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError as error:
            raise TokenizerLoadError(f"{config_file}: cannot read JSON ({error})") from error
        if isinstance(config.get("chat_template"), str):
            chat_template = config["chat_template"]
        if isinstance(config.get("add_bos_token"), bool):
            add_bos = config["add_bos_token"]
    return SentencePieceTokenizer(processor, chat_template=chat_template, add_bos=add_bos)
