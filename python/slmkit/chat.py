"""Chat templates: turn a list of messages into the prompt text a chat model was trained on.

Templates are Jinja, as Hugging Face and llama.cpp ship them (tokenizer_config.json's
`chat_template`, or GGUF's `tokenizer.chat_template`). They are rendered in jinja2's immutable
sandbox with the names Hugging Face's apply_chat_template provides (raise_exception,
strftime_now, bos_token, eos_token, add_generation_prompt, tojson that keeps non-ASCII text), so
templates written for transformers render the same text here.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from .errors import SlmkitError
from .tokenizers._text_pieces import END_OF_TURN_TEXTS


class ChatTemplateError(SlmkitError, ValueError):
    """No chat template, a template that does not compile, or one that refused the messages."""


def _raise_exception(message):
    raise ChatTemplateError(f"the chat template refused the messages: {message}")


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def compile_template(source: str):
    """The compiled template (cached: models keep one template for their lifetime)."""
    import json

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"the chat template does not compile: {e}") from None


def check_messages(messages) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not hasattr(messages, "__iter__"):
        raise ChatTemplateError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise ChatTemplateError(f"message {i} is not a {{'role': str, 'content': ...}} dict: {m!r}")
        out.append(dict(m))
    return out


def token_text(tokenizer, token_id: int | None) -> str:
    """The literal text of a (special) token, e.g. '<|im_start|>', for the template's bos_token and
    eos_token; '' when unknown."""
    if token_id is None:
        return ""
    tokens = getattr(tokenizer, "tokens", None)                 # GGUF vocabularies
    if tokens is not None and 0 <= token_id < len(tokens):
        return tokens[token_id]
    backend = getattr(tokenizer, "backend", None)               # tokenizer.json
    if backend is not None and hasattr(backend, "id_to_token"):
        return backend.id_to_token(token_id) or ""
    processor = getattr(tokenizer, "processor", None)           # SentencePiece
    if processor is not None:
        return processor.id_to_piece(token_id)
    return ""


def render(template: str, messages, add_generation_prompt: bool = True, tokenizer=None, **extra) -> str:
    """The prompt text for messages. extra names are passed to the template (e.g. tools=...)."""
    context = dict(messages=check_messages(messages), add_generation_prompt=add_generation_prompt)
    if tokenizer is not None:
        context["bos_token"] = token_text(tokenizer, tokenizer.bos_id)
        context["eos_token"] = token_text(tokenizer, tokenizer.eos_id)
    context.update(extra)
    import jinja2
    try:
        return compile_template(template).render(**context)
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"the chat template failed: {e}") from None


_OPEN, _CLOSE = "\ue000", "\ue001"     # private-use characters that mark message text


def render_with_spans(template: str, messages, add_generation_prompt: bool = True, tokenizer=None,
                      **extra) -> tuple[str, list[tuple[int, int]]]:
    """render(), and where in the text each message's content ended up: (start, end) spans that
    tokenizing must keep as plain text, so that a message saying '<|im_end|>' stays text. The
    content is marked inside its surrounding whitespace (templates that trim still trim); when a
    template cuts or rewrites the marked text, no spans are returned (the whole text is then
    tokenized as rendered, as transformers and llama.cpp do)."""
    checked = check_messages(messages)
    text = render(template, checked, add_generation_prompt, tokenizer=tokenizer, **extra)
    if _OPEN in template or _CLOSE in template or any(
            isinstance(m["content"], str) and (_OPEN in m["content"] or _CLOSE in m["content"])
            for m in checked):
        return text, []
    marked = []
    for m in checked:
        content = m["content"]
        if isinstance(content, str) and content.strip():
            core = content.strip()
            start = content.index(core)
            m = {**m, "content": content[:start] + _OPEN + core + _CLOSE + content[start + len(core):]}
        marked.append(m)
    try:
        rendered = render(template, marked, add_generation_prompt, tokenizer=tokenizer, **extra)
    except ChatTemplateError:
        return text, []
    out, spans, opened = [], [], None
    length = 0
    for piece in re.split(f"([{_OPEN}{_CLOSE}])", rendered):
        if piece == _OPEN:
            if opened is not None:
                return text, []
            opened = length
        elif piece == _CLOSE:
            if opened is None:
                return text, []
            spans.append((opened, length))
            opened = None
        else:
            out.append(piece)
            length += len(piece)
    if opened is not None or "".join(out) != text:
        return text, []
    return text, spans


def end_of_turn_ids(tokenizer, template: str) -> frozenset[int]:
    """Ids that end an assistant turn: the tokenizer's EOS set plus any well-known end-of-turn token
    the template writes (an HF folder may name only </s> as EOS while its turns end in <|im_end|>)."""
    ids = set(tokenizer.eos_ids)
    for text in END_OF_TURN_TEXTS:
        if text in template:
            encoded = tokenizer.encode(text, add_bos=False, parse_special=True)
            if len(encoded) == 1:
                ids.add(encoded[0])
    return frozenset(ids)


__all__ = ["ChatTemplateError", "check_messages", "compile_template", "end_of_turn_ids", "render",
           "render_with_spans", "token_text"]
