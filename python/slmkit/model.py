"""Model: what `slmkit.load` returns. A small API in the style users know from mlx-lm and llm:
generate / stream / logits (chat and suggest build on them)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .checkpoint import Checkpoint
from .generate import stream_text
from .sampling import SamplingParams


class Model:
    def __init__(self, checkpoint: Checkpoint, arch, tokenizer, backend):
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.arch = arch            # e.g. models.llama.LlamaModel
        self.tokenizer = tokenizer
        self.backend = backend

    def __repr__(self):
        c = self.config
        return (f"<slmkit.Model {c.architecture} {self.checkpoint.num_parameters / 1e6:.2f}M params, "
                f"{c.num_hidden_layers} layers, backend={self.backend.name}, from {self.checkpoint.source}>")

    # ---- scoring ------------------------------------------------------------------------------

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos)

    def logits(self, token_ids) -> np.ndarray:
        """Logits [len(token_ids), vocab] (float32) of a fresh forward pass over token_ids."""
        ids = list(token_ids)
        if not ids:
            raise ValueError("logits: no token ids given")
        cache = self.arch.new_cache(len(ids))
        return np.asarray(self.arch.forward(ids, cache, all_logits=True), dtype=np.float32)

    # ---- generation ---------------------------------------------------------------------------

    def _prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
            if not ids:
                # an empty text prompt: start from BOS where the vocabulary has one
                if self.tokenizer.bos_id is None:
                    raise ValueError("the prompt is empty and the vocabulary has no BOS token to "
                                     "start from: give some text")
                ids = [self.tokenizer.bos_id]
            return ids
        return [int(t) for t in prompt]

    def stream(self, prompt, max_new_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
               top_p: float = 0.95, min_p: float = 0.05, repetition_penalty: float = 1.0,
               seed: int | None = None, stop=()) -> Iterator[str]:
        """Yield pieces of generated text as they are produced. temperature=0 is greedy.
        prompt is text or a list of token ids."""
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repetition_penalty=repetition_penalty, seed=seed)
        yield from stream_text(self, self._prompt_ids(prompt), max_new_tokens, params, stop=stop)

    def generate(self, prompt, max_new_tokens: int = 256, **kwargs) -> str:
        """The generated text (without the prompt). Same arguments as stream()."""
        return "".join(self.stream(prompt, max_new_tokens=max_new_tokens, **kwargs))

    def generate_ids(self, prompt, max_new_tokens: int = 256, **kwargs) -> list[int]:
        """Generated token ids (EOS excluded)."""
        from .generate import stream_tokens
        params = SamplingParams(**kwargs)
        eos = self.tokenizer.eos_ids
        return [t for t in stream_tokens(self, self._prompt_ids(prompt), max_new_tokens, params)
                if t not in eos]

    # ---- chat ---------------------------------------------------------------------------------

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, tokenize: bool = False,
                            template: str | None = None, **extra):
        """The prompt for a conversation, rendered with the model's chat template (or template=):
        text, or token ids when tokenize (special-token text in the rendering becomes control
        tokens, but the same text inside a message stays plain text; BOS is added per the
        vocabulary's flag unless the template wrote it already).
        messages: [{"role": "system"|"user"|"assistant", "content": str}, ...]."""
        from .chat import ChatTemplateError, render, render_with_spans
        template = template or self.tokenizer.chat_template
        if not template:
            raise ChatTemplateError(
                f"{self.checkpoint.source}: the model has no chat template (tokenizer_config.json "
                f"'chat_template' or GGUF 'tokenizer.chat_template'); pass template=\"...\" (Jinja) "
                f"or use generate() with plain text")
        if not tokenize:
            return render(template, messages, add_generation_prompt, tokenizer=self.tokenizer, **extra)
        text, spans = render_with_spans(template, messages, add_generation_prompt,
                                        tokenizer=self.tokenizer, **extra)
        encode_spans = getattr(self.tokenizer, "encode_with_plain_spans", None)
        if encode_spans is None:                # a plugin tokenizer without the base class
            return self.tokenizer.encode(text, parse_special=True)
        return encode_spans(text, spans)

    def chat_stream(self, messages, max_new_tokens: int = 512, template: str | None = None,
                    temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                    min_p: float = 0.05, repetition_penalty: float = 1.0, seed: int | None = None,
                    stop=()) -> Iterator[str]:
        """Yield the assistant's reply to messages (a list of role/content dicts, or one user
        message as a string) piece by piece; it ends at the end-of-turn token."""
        from .chat import end_of_turn_ids
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        ids = self.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                       template=template)
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repetition_penalty=repetition_penalty, seed=seed)
        stop_ids = end_of_turn_ids(self.tokenizer, template or self.tokenizer.chat_template)
        yield from stream_text(self, ids, max_new_tokens, params, stop=stop, stop_ids=stop_ids)

    def chat(self, messages, max_new_tokens: int = 512, **kwargs) -> str:
        """The assistant's reply to messages. Same arguments as chat_stream()."""
        return "".join(self.chat_stream(messages, max_new_tokens=max_new_tokens, **kwargs))

    # ---- predictive text ----------------------------------------------------------------------

    def suggest(self, text: str, k: int = 3, **kwargs) -> list[str]:
        """The k most likely next whole words after text (without leading space), most likely
        first. See suggest_with_probs for the options."""
        return [word for word, _ in self.suggest_with_probs(text, k, **kwargs)]

    def suggest_with_probs(self, text: str, k: int = 3, beam_width: int | None = None,
                           max_word_tokens: int = 6) -> list[tuple[str, float]]:
        """The k most likely next words with their probabilities, from a beam search over sub-word
        tokens (beam_width default k + 2, words of at most max_word_tokens tokens)."""
        from .suggest import suggest_words
        return suggest_words(self, text, k, beam_width=beam_width, max_word_tokens=max_word_tokens)
