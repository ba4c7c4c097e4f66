"""Tokenizers against real vocabularies and llama.cpp's tokenizer test vectors (in ../shared)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from slmkit.tokenizers import BUILTIN_TOKENIZERS, Tokenizer, TokenizerLoadError, load_tokenizer
from slmkit.tokenizers.gguf_vocab import PRE_TOKENIZER_NAMES, GGUFTokenizer
from slmkit.tokenizers.llama2c import Llama2cTokenizer

SHARED = Path(os.environ.get("SLMKIT_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
if not SHARED.is_dir():
    pytest.skip(f"shared test data not found at {SHARED} (set SLMKIT_SHARED)", allow_module_level=True)

VECTORS = SHARED / "tokenizers" / "vectors"
LLAMA2_SPM = SHARED / "tokenizers" / "llama2-spm"
GPT2_FILES = SHARED / "tokenizers" / "gpt2"
STORIES = SHARED / "models" / "stories260K"
CORPORA = ["wikitext2-test.raw", "tinystories-valid-part.txt", "tinyshakespeare.txt"]
CORPUS_PREFIX_CHARS = 200_000


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data missing: {path}")
    return path


def vector_cases(vocab: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's test strings (each followed by a '__ggml_vocab_test__' line) and expected ids (no BOS)."""
    inputs = need(VECTORS / f"ggml-vocab-{vocab}.gguf.inp").read_bytes().decode("utf-8")
    strings = inputs.split("\n__ggml_vocab_test__\n")[:-1]
    lines = need(VECTORS / f"ggml-vocab-{vocab}.gguf.out").read_bytes().decode("utf-8").split("\n")
    assert len(lines) >= len(strings)
    return [(text, [int(i) for i in line.split()]) for text, line in zip(strings, lines)]


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    """Each tokenizer loaded once (the gguf package takes seconds to read a 50k-token vocabulary)."""
    loaded = {}
    sources = {
        "gguf-gpt-2": VECTORS / "ggml-vocab-gpt-2.gguf",
        "gguf-llama-spm": VECTORS / "ggml-vocab-llama-spm.gguf",
        "gpt2-files": GPT2_FILES,
        "llama2-sentencepiece": LLAMA2_SPM / "tokenizer.model",
        "llama2-hf-json": LLAMA2_SPM / "tokenizer.json",
        "stories-llama2c": STORIES / "llama2c" / "tok512.bin",
        "stories-sentencepiece": STORIES / "hf" / "tokenizer.model",
        "stories-hf-json": STORIES / "hf" / "tokenizer.json",
    }
    for name, path in sources.items():
        if path.exists():
            loaded[name] = load_tokenizer(path)
    return loaded


def get(tokenizers, name) -> Tokenizer:
    if name not in tokenizers:
        pytest.skip(f"shared test data for {name} missing")
    return tokenizers[name]


# Which tokenizer must reproduce which vector file exactly.
VECTOR_CHECKS = [
    ("gguf-gpt-2", "gpt-2"),
    ("gpt2-files", "gpt-2"),
    ("gguf-llama-spm", "llama-spm"),
    ("llama2-sentencepiece", "llama-spm"),
    ("llama2-hf-json", "llama-spm"),
]


@pytest.mark.parametrize("name,vocab", VECTOR_CHECKS)
def test_llama_cpp_vectors_match_exactly(tokenizers, name, vocab):
    tokenizer = get(tokenizers, name)
    cases = vector_cases(vocab)
    assert len(cases) == 46
    mismatches = [(text, expected, tokenizer.encode(text, add_bos=False))
                  for text, expected in cases if tokenizer.encode(text, add_bos=False) != expected]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {mismatches[0]!r}"


@pytest.mark.parametrize("name,vocab", VECTOR_CHECKS)
def test_vector_strings_round_trip(tokenizers, name, vocab):
    tokenizer = get(tokenizers, name)
    for text, _ in vector_cases(vocab):
        assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("name", ["gguf-gpt-2", "gguf-llama-spm", "gpt2-files", "llama2-sentencepiece",
                                  "llama2-hf-json", "stories-llama2c"])
def test_corpora_round_trip(tokenizers, name):
    tokenizer = get(tokenizers, name)
    for corpus in CORPORA:
        text = need(SHARED / "corpora" / corpus).read_text(encoding="utf-8")[:CORPUS_PREFIX_CHARS]
        assert tokenizer.decode(tokenizer.encode(text)) == text, corpus


@pytest.mark.parametrize("ours,reference", [("gguf-llama-spm", "llama2-sentencepiece"), ("gguf-gpt-2", "gpt2-files")])
def test_gguf_vocabulary_agrees_with_original_files_on_corpora(tokenizers, ours, reference):
    ours, reference = get(tokenizers, ours), get(tokenizers, reference)
    for corpus in CORPORA:
        text = need(SHARED / "corpora" / corpus).read_text(encoding="utf-8")[:50_000]
        assert ours.encode(text) == reference.encode(text), corpus


def test_stories_model_reference_encoding(tokenizers):
    for name in ("stories-llama2c", "stories-sentencepiece", "stories-hf-json"):
        assert get(tokenizers, name).encode("Once upon a time") == [1, 403, 407, 261, 378], name


def test_llama2c_matches_sentencepiece_on_tinystories(tokenizers):
    ours, reference = get(tokenizers, "stories-llama2c"), get(tokenizers, "stories-sentencepiece")
    lines = need(SHARED / "corpora" / "tinystories-valid-part.txt").read_text(encoding="utf-8").splitlines()
    # stories260K's SentencePiece model removes extra whitespace (trailing spaces, runs of spaces)
    # before tokenizing; llama2.c's algorithm does not. Compare on whitespace-normalised lines.
    lines = [" ".join(line.split()) for line in lines[:800]]
    lines = [line for line in lines if line]
    assert len(lines) >= 300
    differing = [line for line in lines if ours.encode(line) != reference.encode(line)]
    assert not differing, f"{len(differing)} of {len(lines)} lines differ, first: {differing[0]!r}"


def test_llama2c_keeps_whitespace_that_sentencepiece_normalises(tokenizers):
    ours = get(tokenizers, "stories-llama2c")
    text = "Lily said,  \"Hi!\" "
    assert ours.decode(ours.encode(text)) == text


@pytest.mark.parametrize("name", ["gguf-llama-spm", "llama2-sentencepiece", "llama2-hf-json", "stories-llama2c",
                                  "stories-hf-json", "stories-sentencepiece"])
def test_bos_added_once_never_twice(tokenizers, name):
    tokenizer = get(tokenizers, name)
    bos = tokenizer.bos_id
    assert bos == 1 and tokenizer.add_bos
    ids = tokenizer.encode("Hello world")
    assert ids[0] == bos and bos not in ids[1:]
    # The text's own BOS (parsed as a special token) is not doubled.
    ids = tokenizer.encode("<s>Hello world", parse_special=True)
    assert ids[0] == bos and ids.count(bos) == 1
    assert bos not in tokenizer.encode("Hello world", add_bos=False)
    assert tokenizer.encode("") == [bos]
    assert tokenizer.encode("", add_bos=False) == []


def test_gpt2_does_not_add_bos_by_default(tokenizers):
    for name in ("gguf-gpt-2", "gpt2-files"):
        tokenizer = get(tokenizers, name)
        assert tokenizer.bos_id == 50256 and 50256 in tokenizer.eos_ids and not tokenizer.add_bos
        assert tokenizer.encode("Hello") == [15496]
        assert tokenizer.encode("Hello", add_bos=True) == [50256, 15496]


@pytest.mark.parametrize("name,special,special_id", [
    ("gguf-gpt-2", "<|endoftext|>", 50256), ("gpt2-files", "<|endoftext|>", 50256),
    ("gguf-llama-spm", "</s>", 2), ("llama2-sentencepiece", "</s>", 2), ("llama2-hf-json", "</s>", 2),
    ("stories-llama2c", "</s>", 2), ("stories-hf-json", "</s>", 2),
])
def test_parse_special(tokenizers, name, special, special_id):
    tokenizer = get(tokenizers, name)
    text = f"Hi{special}there"
    plain = tokenizer.encode(text, add_bos=False)
    assert special_id not in plain  # user text that looks like a control token stays text
    assert tokenizer.decode(plain) == text
    parsed = tokenizer.encode(text, add_bos=False, parse_special=True)
    assert parsed.count(special_id) == 1
    assert tokenizer.decode(parsed).replace(" ", "") == "Hithere"  # control tokens decode to nothing


def test_hf_json_metadata(tokenizers):
    tokenizer = get(tokenizers, "stories-hf-json")
    assert tokenizer.vocab_size == 512 and tokenizer.eos_ids == {2} and tokenizer.eos_id == 2


def test_gguf_metadata(tokenizers):
    tokenizer = get(tokenizers, "gguf-llama-spm")
    assert tokenizer.vocab_size == 32000 and tokenizer.eos_ids == {2}
    gpt2 = get(tokenizers, "gguf-gpt-2")
    assert gpt2.vocab_size == 50257 and gpt2.pre_tokenizer_name == "gpt-2"


def test_gguf_from_reader_uses_an_open_reader():
    import gguf
    reader = gguf.GGUFReader(str(need(VECTORS / "ggml-vocab-llama-spm.gguf")))
    tokenizer = GGUFTokenizer.from_reader(reader)
    assert tokenizer.encode("Hello world") == [1, 15043, 3186]


# Hand-made GGUF vocabularies (written with gguf.GGUFWriter) for pre-tokenizer names and errors.

def write_byte_level_gguf(path: Path, pre: str | None, merges=("Ġ t",)) -> Path:
    import gguf

    from slmkit.tokenizers._text_pieces import byte_level_alphabet
    tokens = list(byte_level_alphabet().values()) + ["Ġt", "<|endoftext|>"]
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_tokenizer_model("gpt2")
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 1) + [3])
    writer.add_token_merges(list(merges))
    writer.add_eos_token_id(len(tokens) - 1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unknown_pre_tokenizer_raises(tmp_path):
    path = write_byte_level_gguf(tmp_path / "odd.gguf", pre="no-such-pre-tokenizer")
    with pytest.raises(TokenizerLoadError, match="no-such-pre-tokenizer") as error:
        load_tokenizer(path)
    assert "odd.gguf" in str(error.value)


def test_smollm_pre_tokenizer_splits_digits(tmp_path):
    tokenizer = load_tokenizer(write_byte_level_gguf(tmp_path / "smollm.gguf", pre="smollm"))
    digit = {char: token_id for token_id, char in enumerate(tokenizer.tokens)}
    assert tokenizer.encode("a 123") == [digit["a"], digit["Ġ"], digit["1"], digit["2"], digit["3"]]
    assert tokenizer.encode(" t") == [tokenizer.id_of["Ġt"]]
    assert tokenizer.eos_ids == {len(tokenizer.tokens) - 1}


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZER_NAMES))
def test_every_known_pre_tokenizer_name_loads(tmp_path, pre):
    tokenizer = load_tokenizer(write_byte_level_gguf(tmp_path / "vocab.gguf", pre=pre))
    text = "Hello, World's 12345 tokens!\n\n  done\t"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_missing_file_and_unknown_files_raise_naming_the_file(tmp_path):
    with pytest.raises(TokenizerLoadError, match="nothing-here"):
        load_tokenizer(tmp_path / "nothing-here.gguf")
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(TokenizerLoadError, match="notes.txt"):
        load_tokenizer(unknown)
    with pytest.raises(TokenizerLoadError, match="no tokenizer found"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("name,content", [
    ("broken.gguf", b"GGUF" + bytes(range(256)) * 4),
    ("tokenizer.json", b'{"model": '),
    ("tokenizer.model", b"\x00\x01 not a protobuf" * 10),
])
def test_corrupt_files_raise_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TokenizerLoadError, match=name.replace(".", r"\.")):
        load_tokenizer(path)


def test_truncated_llama2c_file_is_not_taken_for_a_tokenizer(tmp_path):
    truncated = tmp_path / "tok512.bin"
    truncated.write_bytes(need(STORIES / "llama2c" / "tok512.bin").read_bytes()[:3001])
    with pytest.raises(TokenizerLoadError, match="tok512.bin"):
        load_tokenizer(truncated)
    with pytest.raises(TokenizerLoadError, match="stories260K.bin"):
        load_tokenizer(need(STORIES / "llama2c" / "stories260K.bin"))  # a checkpoint, not a tokenizer
    assert isinstance(load_tokenizer(STORIES / "llama2c" / "tok512.bin"), Llama2cTokenizer)


def test_model_folder_prefers_tokenizer_json(tmp_path):
    from slmkit.tokenizers.hf_json import HFTokenizer
    from slmkit.tokenizers.sentencepiece import SentencePieceTokenizer
    assert isinstance(load_tokenizer(need(STORIES / "hf")), HFTokenizer)
    only_model = tmp_path / "model"
    only_model.mkdir()
    (only_model / "tokenizer.model").write_bytes((STORIES / "hf" / "tokenizer.model").read_bytes())
    assert isinstance(load_tokenizer(only_model), SentencePieceTokenizer)


def test_registry_lists_every_builtin_kind():
    names = [kind.name for kind in BUILTIN_TOKENIZERS]
    assert names == ["gguf", "hf-tokenizer-json", "sentencepiece", "gpt2-encoder-json", "llama2c-bin"]
    for kind in BUILTIN_TOKENIZERS:
        assert callable(kind.can_load) and callable(kind.load)


def test_smollm2_gguf_vocabulary_round_trips_the_whole_corpora(smollm2_path):
    """The real model's own vocabulary (tokenizer.ggml.pre = 'smollm'), on every character of
    the three corpora (the other vocabularies above are checked on a prefix, for time)."""
    tokenizer = load_tokenizer(smollm2_path)
    assert tokenizer.pre_tokenizer_name == "smollm" and not tokenizer.add_bos
    for corpus in CORPORA:
        text = need(SHARED / "corpora" / corpus).read_text(encoding="utf-8")
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text, corpus
        assert len(text) / len(ids) > 2.5, corpus                 # it really merges
    for text in ["", " ", "\n\n\n", "  leading", "trailing  ", "1234567", "naïve café 🙂 日本語",
                 "<|im_start|>not special", "\u2581\u2581x", "a\u0000b"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text, repr(text)
