"""Hugging Face `tokenizer.json` files, through the `tokenizers` library."""
from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as HFBackend

from ._text_pieces import END_OF_TURN_TEXTS
from .base import Tokenizer
from .errors import TokenizerLoadError

# Files that may sit beside tokenizer.json and carry BOS/EOS/chat-template settings.
_CONFIG_FILES = ("tokenizer_config.json", "config.json", "generation_config.json")


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` behind slmkit's interface.

    Two copies of the backend are kept: one that splits special added tokens (e.g. '<s>') out of the
    text, and one with `encode_special_tokens` set, which treats their text as plain text. Encoding
    never runs the post-processor, so BOS is added in exactly one place: Tokenizer.encode."""

    def __init__(self, backend: HFBackend, *, bos_id: int | None, eos_ids, add_bos: bool,
                 chat_template: str | None = None):
        self.backend = backend
        self.plain_text_backend = HFBackend.from_str(backend.to_str())
        self.plain_text_backend.encode_special_tokens = True
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.bos_id = bos_id
        self.eos_ids = frozenset(eos_ids)
        self.add_bos = add_bos
        self.chat_template = chat_template

    def special_token_texts(self) -> dict[str, int]:
        return {t.content: i for i, t in self.backend.get_added_tokens_decoder().items() if t.special}

    def _encode(self, text: str, parse_special: bool) -> list[int]:
        backend = self.backend if parse_special else self.plain_text_backend
        return backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_id(self, text: str) -> int | None:
        return self.backend.token_to_id(text)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as error:
        raise TokenizerLoadError(f"{path}: cannot read JSON ({error})") from error
    if not isinstance(value, dict):
        raise TokenizerLoadError(f"{path}: expected a JSON object")
    return value


def _token_text(value) -> str | None:
    """tokenizer_config stores special tokens as a string or as {'content': ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _as_id_list(value) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def _chat_template_from(folder: Path, tokenizer_config: dict) -> str | None:
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str):
        return template
    jinja_file = folder / "chat_template.jinja"  # newer transformers save it on its own
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    return None


def _post_processor_prefix(backend: HFBackend) -> int | None:
    """The token the file's own post-processor puts first (its BOS), if any; used when no config says."""
    with_special = backend.encode("a", add_special_tokens=True).ids
    without = backend.encode("a", add_special_tokens=False).ids
    if len(with_special) > len(without) and with_special[1:1 + len(without)] == without:
        return with_special[0]
    return None


def _special_added_tokens(backend: HFBackend) -> dict[str, int]:
    return {token.content: token_id for token_id, token in backend.get_added_tokens_decoder().items()
            if token.special}


def load_hf_json(path) -> HFTokenizer:
    """Load a tokenizer.json; settings come from tokenizer_config.json, config.json and
    generation_config.json beside it when present."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        backend = HFBackend.from_file(str(path))
    except Exception as error:  # the Rust side raises a bare Exception
        raise TokenizerLoadError(f"{path}: not a readable Hugging Face tokenizer.json ({error})") from error

    folder = path.parent
    configs = {name: (_read_json(folder / name) if (folder / name).is_file() else {}) for name in _CONFIG_FILES}
    tokenizer_config = configs["tokenizer_config.json"]

    bos_text = _token_text(tokenizer_config.get("bos_token"))
    bos_id = backend.token_to_id(bos_text) if bos_text else None
    if bos_id is None:
        for name in ("generation_config.json", "config.json"):
            ids = _as_id_list(configs[name].get("bos_token_id"))
            if ids:
                bos_id = ids[0]
                break

    prefix_id = _post_processor_prefix(backend)
    if bos_id is None:
        bos_id = prefix_id

    eos_ids: set[int] = set()
    eos_text = _token_text(tokenizer_config.get("eos_token"))
    if eos_text and backend.token_to_id(eos_text) is not None:
        eos_ids.add(backend.token_to_id(eos_text))
    for name in ("config.json", "generation_config.json"):
        eos_ids.update(_as_id_list(configs[name].get("eos_token_id")))
    if not eos_ids:  # a bare tokenizer.json: fall back to well-known end tokens among its specials
        eos_ids = {i for text, i in _special_added_tokens(backend).items() if text in END_OF_TURN_TEXTS}

    add_bos = tokenizer_config.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = bos_id is not None and prefix_id == bos_id

    return HFTokenizer(backend, bos_id=bos_id, eos_ids=eos_ids, add_bos=add_bos,
                       chat_template=_chat_template_from(folder, tokenizer_config))
