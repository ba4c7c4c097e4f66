"""OpenAI GPT-2 style vocabularies: encoder.json (token -> id) + vocab.bpe (merges)."""
from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer as HFBackend, decoders, models, pre_tokenizers

from .errors import TokenizerLoadError
from .hf_json import HFTokenizer

END_OF_TEXT = "<|endoftext|>"


def gpt2_file_pair(path) -> tuple[Path, Path] | None:
    """(encoder.json, vocab.bpe) for a folder holding both or for either file; else None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name not in ("encoder.json", "vocab.bpe"):
        return None
    encoder, merges = folder / "encoder.json", folder / "vocab.bpe"
    return (encoder, merges) if encoder.is_file() and merges.is_file() else None


def load_gpt2_files(path) -> HFTokenizer:
    pair = gpt2_file_pair(path)
    if pair is None:
        raise TokenizerLoadError(f"{path}: expected encoder.json and vocab.bpe side by side")
    encoder, merges = pair
    try:
        model = models.BPE.from_file(str(encoder), str(merges))
    except Exception as error:
        raise TokenizerLoadError(f"{encoder} / {merges}: not a readable GPT-2 vocabulary ({error})") from error
    backend = HFBackend(model)
    # ByteLevel's own regex is GPT-2's pre-tokenizer; no prefix space, as in the original encoder.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    end_of_text = backend.token_to_id(END_OF_TEXT)
    if end_of_text is not None:
        backend.add_special_tokens([AddedToken(END_OF_TEXT, special=True, normalized=False)])
    # GPT-2 has one control token, used as both BOS and EOS; prompts do not start with it.
    return HFTokenizer(backend, bos_id=end_of_text, eos_ids={end_of_text} - {None}, add_bos=False)
