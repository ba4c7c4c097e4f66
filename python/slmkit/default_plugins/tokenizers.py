"""Built-in tokenizers: tokenizer.json, tokenizer.model, llama2.c tokenizer.bin, GGUF vocabularies,
GPT-2 encoder.json/vocab.bpe."""
from ..hookspecs import hookimpl


@hookimpl
def slmkit_register_tokenizers(register):
    from ..tokenizers import BUILTIN_TOKENIZERS
    for name, can_load, load in BUILTIN_TOKENIZERS:
        register(name, can_load, load)
