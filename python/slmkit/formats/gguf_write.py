"""Write a Checkpoint as a GGUF file that llama.cpp loads, with the `gguf` package's GGUFWriter.

Tensors keep their slmkit storage: q8_0/q4_0/q4_1 blocks are ggml's own layout and are written as
they are (no requantisation), f32/f16/bf16 likewise. A block-format row whose length is not a
multiple of 32 is zero-padded in slmkit but cannot be a GGUF block row: such tensors are written
dequantised as F32 (exact: every block value is representable), with a warning.

Q/K rows: GGUF's "llama" architecture expects them in the interleaved-RoPE order (pairs
(2j, 2j+1), as llama.cpp's converter permutes them); "qwen2" expects the Hugging Face rotate-half
order. Rows are moved whole, so block rows move without any change to their bytes.

Tokenizer metadata (tokenizer.ggml.*) comes from, in order: the source GGUF's own keys (copied
as they are), a SentencePiece tokenizer.model ("llama"), a Hugging Face tokenizer.json (byte-level
BPE -> "gpt2"; SentencePiece-style BPE with byte fallback -> "llama"), or a llama2.c tokenizer.bin
("llama"). BOS/EOS ids, add_bos and the chat template come from slmkit's own reading of the same
tokenizer.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from .. import quant
from ..checkpoint import Checkpoint
from ..errors import ModelFormatError, UnsupportedModelError
from .atomic import atomic_output_file
from .gguf import _GLOBAL_NAMES, _LAYER_NAMES

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE_MARK = "\u2581"

# HF architecture -> (GGUF architecture, whether it wants interleaved q/k rows)
GGUF_ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}
_GGML_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1"}
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
               "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1"}
_GGUF_NAME_OF = {hf: g for g, hf in _GLOBAL_NAMES.items()}
_LAYER_GGUF_NAME_OF = {hf: g for g, hf in _LAYER_NAMES.items()}


def gguf_tensor_name(hf_name: str) -> str:
    if hf_name in _GGUF_NAME_OF:
        return _GGUF_NAME_OF[hf_name]
    parts = hf_name.split(".", 3)          # model.layers.N.rest
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in _LAYER_GGUF_NAME_OF:
        return f"blk.{parts[2]}.{_LAYER_GGUF_NAME_OF[parts[3]]}"
    raise UnsupportedModelError(f"tensor {hf_name!r} has no GGUF name (not a Llama-family tensor)")


# ---- Q/K row order -------------------------------------------------------------------------

def rope_row_order(n_heads: int, head_dim: int, to_interleaved: bool) -> np.ndarray:
    """Row indices that reorder a q/k projection between the rotate-half order (j, j + hd/2)
    and the interleaved order (2j, 2j+1): new[r] = old[order[r]]."""
    half = head_dim // 2
    # rotate-half row of interleaved row (h, 2j + t) is (h, t*half + j)
    j, t = np.meshgrid(np.arange(half), np.arange(2), indexing="ij")   # [half, 2]
    within = (t * half + j).reshape(-1)                                 # interleaved -> rotate-half
    if not to_interleaved:
        within = np.argsort(within)
    return (np.arange(n_heads)[:, None] * head_dim + within[None, :]).reshape(-1)


# ---- tokenizer metadata ----------------------------------------------------------------------

def _copy_gguf_tokenizer_keys(reader) -> list[tuple]:
    """(key, value, type, sub_type) of every tokenizer.* field of an open GGUF, values raw."""
    from gguf import GGUFValueType
    out = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        types = field.types
        if types[0] == GGUFValueType.ARRAY:
            if len(types) < 2:
                continue                                       # an empty array: nothing to copy
            sub = types[1]
            if sub == GGUFValueType.STRING:
                values = [bytes(field.parts[i]) for i in field.data]
            elif sub == GGUFValueType.ARRAY:
                raise UnsupportedModelError(f"GGUF key {key!r} holds nested arrays; cannot copy it")
            else:
                values = np.concatenate([field.parts[i] for i in field.data]).tolist()
            out.append((key, values, GGUFValueType.ARRAY, sub))
        elif types[0] == GGUFValueType.STRING:
            out.append((key, bytes(field.parts[field.data[0]]), types[0], None))
        else:
            out.append((key, field.parts[field.data[0]].tolist()[0], types[0], None))
    return out


def _sentencepiece_vocab(path: Path) -> dict:
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    sp.load(str(path))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i)
                     else UNUSED if sp.is_unused(i) else BYTE if sp.is_byte(i) else NORMAL)
    return {"model": "llama", "tokens": tokens, "scores": scores, "types": types,
            "unk": sp.unk_id() if sp.unk_id() >= 0 else None}


def _llama2c_vocab(path: Path) -> dict:
    from ..tokenizers.llama2c import BOS_ID, BYTE_TOKEN_OFFSET, EOS_ID, UNK_ID, read_llama2c_vocab
    pieces, scores = read_llama2c_vocab(path)
    tokens, types = [], []
    for i, piece in enumerate(pieces):
        if i == UNK_ID:
            tokens.append("<unk>"); types.append(UNKNOWN)
        elif i in (BOS_ID, EOS_ID):
            tokens.append("<s>" if i == BOS_ID else "</s>"); types.append(CONTROL)
        elif BYTE_TOKEN_OFFSET <= i < BYTE_TOKEN_OFFSET + 256:
            tokens.append(f"<0x{i - BYTE_TOKEN_OFFSET:02X}>"); types.append(BYTE)
        else:
            tokens.append(piece.decode("utf-8", "surrogateescape").replace(" ", SPACE_MARK))
            types.append(NORMAL)
    return {"model": "llama", "tokens": tokens, "scores": [float(s) for s in scores],
            "types": types, "unk": UNK_ID}


# pre-tokenizer regexes as Hugging Face tokenizer.json files spell them -> tokenizer.ggml.pre
_KNOWN_SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}


def _pre_tokenizer_name(pre: dict | None, source: Path) -> str:
    """tokenizer.ggml.pre for a byte-level BPE tokenizer.json's pre_tokenizer."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre or {}]
    kinds = [(s.get("type"), s) for s in steps or []]
    names = [k for k, _ in kinds]
    if names == ["ByteLevel"] and kinds[0][1].get("use_regex", True):
        return "gpt-2"
    if names == ["Digits", "ByteLevel"] and kinds[0][1].get("individual_digits") and \
            kinds[1][1].get("use_regex", True):
        return "smollm"                                # StarCoder's: GPT-2 words, one digit each
    if names and names[0] == "Split":
        regex = (kinds[0][1].get("pattern") or {}).get("Regex")
        if regex in _KNOWN_SPLIT_REGEXES:
            return _KNOWN_SPLIT_REGEXES[regex]
    warnings.warn(f"{source}: pre-tokenizer {names} is not one slmkit can name for llama.cpp; "
                  f"writing tokenizer.ggml.pre='default', which may split text differently", stacklevel=3)
    return "default"


def _hf_json_vocab(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"{path}: cannot read tokenizer.json ({e})") from None
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedModelError(f"{path}: tokenizer model {model.get('type')!r} cannot be written to GGUF "
                                    f"(slmkit writes BPE vocabularies)")
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = spec.get("added_tokens") or []
    for a in added:
        vocab[a["content"]] = a["id"]
    size = max(vocab.values()) + 1
    tokens: list[str | None] = [None] * size
    for text, i in vocab.items():
        tokens[i] = text
    types = [NORMAL] * size
    for a in added:
        types[a["id"]] = CONTROL if a.get("special") else USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i], types[i] = f"[PAD{i}]", UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or \
        (spec.get("decoder") or {}).get("type") == "ByteLevel"
    if byte_level:
        return {"model": "gpt2", "tokens": tokens, "types": types, "merges": merges,
                "pre": _pre_tokenizer_name(spec.get("pre_tokenizer"), path)}
    if not model.get("byte_fallback") and SPACE_MARK not in "".join(vocab):
        raise UnsupportedModelError(f"{path}: a BPE tokenizer that is neither byte-level nor "
                                    f"SentencePiece-style cannot be written to GGUF")
    # SentencePiece-style BPE: llama.cpp merges the adjacent pair whose joined piece scores
    # highest; rank order of the merges gives the same choices.
    scores = [0.0] * size
    for rank, merge in enumerate(merges):
        joined = merge.replace(" ", "", 1) if isinstance(merge, str) else "".join(merge)
        if joined in vocab and scores[vocab[joined]] == 0.0:
            scores[vocab[joined]] = -float(rank + 1)
    for i, t in enumerate(tokens):
        if len(t) == 6 and t.startswith("<0x") and t.endswith(">") and types[i] == NORMAL:
            types[i] = BYTE
    unk = model.get("unk_token")
    return {"model": "llama", "tokens": tokens, "scores": scores, "types": types,
            "unk": vocab.get(unk) if unk else None}


def _vocab_from(source) -> dict | None:
    """The tokenizer.ggml vocabulary fields for a tokenizer path, or None when there is none."""
    if source is None or not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    if p.is_dir():
        if (p / "tokenizer.model").is_file():
            return _sentencepiece_vocab(p / "tokenizer.model")
        if (p / "tokenizer.json").is_file():
            return _hf_json_vocab(p / "tokenizer.json")
        if (p / "tokenizer.bin").is_file():
            return _llama2c_vocab(p / "tokenizer.bin")
        return None
    if p.suffix == ".model":
        return _sentencepiece_vocab(p)
    if p.name.endswith("tokenizer.json"):
        return _hf_json_vocab(p)
    if p.suffix == ".bin":
        return _llama2c_vocab(p)
    return None


# ---- the writer ----------------------------------------------------------------------------

def _fast_writer_class():
    """gguf.GGUFWriter, with metadata arrays packed in one go: the stock writer packs them one
    element at a time (~4 s for a 50k-token vocabulary and its merges). Same bytes."""
    import struct

    from gguf import GGUFValueType, GGUFWriter

    numeric = {GGUFValueType.UINT8: "<u1", GGUFValueType.INT8: "<i1", GGUFValueType.UINT16: "<u2",
               GGUFValueType.INT16: "<i2", GGUFValueType.UINT32: "<u4", GGUFValueType.INT32: "<i4",
               GGUFValueType.FLOAT32: "<f4", GGUFValueType.UINT64: "<u8", GGUFValueType.INT64: "<i8",
               GGUFValueType.FLOAT64: "<f8", GGUFValueType.BOOL: "<u1"}

    class FastGGUFWriter(GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype != GGUFValueType.ARRAY or sub_type is None or not len(val) or \
                    self.endianess.name != "LITTLE" or sys.byteorder != "little":
                return super()._pack_val(val, vtype, add_vtype, sub_type)
            head = (struct.pack("<I", vtype) if add_vtype else b"") + struct.pack("<IQ", sub_type, len(val))
            if sub_type == GGUFValueType.STRING:
                encoded = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in val]
                return head + b"".join(struct.pack("<Q", len(e)) + e for e in encoded)
            if sub_type in numeric:
                return head + np.asarray(val).astype(numeric[sub_type]).tobytes()
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return FastGGUFWriter


def _tensor_for_gguf(t, order: np.ndarray | None, notes: list[str]):
    """(array, raw GGML type name) of one slmkit tensor, rows reordered when order is given."""
    from gguf import GGMLQuantizationType as Q
    data, wtype = t.data, t.wtype
    if len(t.shape) == 1:
        values = t.to_float32()                      # norms/biases: llama.cpp wants F32
        return (values[order] if order is not None else values), None
    if wtype in quant.BLOCK_TYPES and t.shape[-1] % quant.BLOCK_SIZE:
        notes.append(f"{t.name} ({wtype}, rows of {t.shape[-1]} values)")
        data, wtype = t.to_float32(), "f32"
    data = np.asarray(data)
    if order is not None:
        data = data[order]
    if wtype == "f32":
        return np.ascontiguousarray(data, np.float32), None
    if wtype == "f16":
        return np.ascontiguousarray(data.view(np.float16)), None
    # blocks (uint8 rows) and bf16 (uint16 bits): raw bytes, GGML type given
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(t.shape[0], -1)
    return raw, Q[_GGML_TYPES[wtype]]


def _main_type(ckpt: Checkpoint) -> str:
    from collections import Counter
    counts = Counter()
    for t in ckpt.tensors.values():
        if len(t.shape) == 2:
            counts[t.wtype] += t.numel
    return counts.most_common(1)[0][0] if counts else "f32"


def _add_vocab(writer, vocab: dict, n_rows: int, tok, source) -> None:
    tokens, types = list(vocab["tokens"]), list(vocab["types"])
    scores = list(vocab["scores"]) if "scores" in vocab else None
    if len(tokens) > n_rows:
        raise ModelFormatError(f"{source}: the tokenizer has {len(tokens)} tokens but the embedding "
                               f"only {n_rows} rows")
    for i in range(len(tokens), n_rows):         # llama.cpp needs one token per embedding row
        tokens.append(f"[PAD{i}]")
        types.append(UNUSED)
        if scores is not None:
            scores.append(-1e9)
    writer.add_tokenizer_model(vocab["model"])
    if vocab["model"] == "gpt2":
        writer.add_tokenizer_pre(vocab["pre"])
    from gguf import GGUFValueType as V, Keys
    array = V.ARRAY
    writer.add_key_value(Keys.Tokenizer.LIST, [t.encode("utf-8", "surrogateescape") for t in tokens],
                         array, V.STRING)
    if scores is not None:
        writer.add_key_value(Keys.Tokenizer.SCORES, scores, array, V.FLOAT32)
    writer.add_key_value(Keys.Tokenizer.TOKEN_TYPE, types, array, V.INT32)
    if vocab.get("merges"):
        writer.add_key_value(Keys.Tokenizer.MERGES, vocab["merges"], array, V.STRING)
    if vocab.get("unk") is not None:
        writer.add_unk_token_id(int(vocab["unk"]))
    if tok is not None:
        if tok.bos_id is not None:
            writer.add_bos_token_id(int(tok.bos_id))
        if tok.eos_id is not None:
            writer.add_eos_token_id(int(tok.eos_id))
        writer.add_add_bos_token(bool(tok.add_bos and tok.bos_id is not None))
        if tok.chat_template:
            writer.add_chat_template(tok.chat_template)


def write_gguf(ckpt: Checkpoint, out_path, tokenizer_from=None, name: str | None = None) -> Path:
    """Write ckpt as a GGUF file at out_path (atomically). tokenizer_from: a tokenizer file or
    folder to take the vocabulary from (default: the checkpoint's own)."""
    import gguf

    cfg = ckpt.config
    if cfg.architecture not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(f"{ckpt.source}: architecture {cfg.architecture!r} cannot be "
                                    f"written to GGUF ({', '.join(GGUF_ARCHITECTURES)})")
    arch, wants_interleaved = GGUF_ARCHITECTURES[cfg.architecture]
    out_path = Path(out_path)
    hd = cfg.head_dim
    reorder = cfg.rope_interleaved != wants_interleaved
    orders = {"q_proj": rope_row_order(cfg.num_attention_heads, hd, wants_interleaved),
              "k_proj": rope_row_order(cfg.num_key_value_heads, hd, wants_interleaved)} if reorder else {}

    notes: list[str] = []
    arrays = []
    for hf_name, t in ckpt.tensors.items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue                              # tied: llama.cpp reuses token_embd
        proj = hf_name.split(".")[-2] if hf_name.startswith("model.layers.") else ""
        array, raw_type = _tensor_for_gguf(t, orders.get(proj), notes)
        arrays.append((gguf_tensor_name(hf_name), array, raw_type))
    if notes:
        warnings.warn(f"{ckpt.source}: GGUF block rows hold multiples of 32 values; written as F32 "
                      f"(exact values): {', '.join(notes)}", stacklevel=2)

    embed = ckpt["model.embed_tokens.weight"]
    reader = ckpt.extra.get("gguf_reader")
    tok_source = tokenizer_from if tokenizer_from is not None else ckpt.tokenizer
    copied = _copy_gguf_tokenizer_keys(reader) if (
        reader is not None and tokenizer_from is None) else None
    vocab = None if copied is not None else _vocab_from(tok_source)
    tok = None
    if vocab is not None:
        from ..loading import load_tokenizer
        tok = tok_source if not isinstance(tok_source, (str, Path)) else load_tokenizer(tok_source)
    elif copied is None:
        warnings.warn(f"{ckpt.source}: no tokenizer file to take a vocabulary from; the GGUF has no "
                      f"tokenizer metadata (llama.cpp needs one; pass tokenizer_from=)", stacklevel=2)

    with atomic_output_file(out_path) as tmp:
        writer = _fast_writer_class()(str(tmp), arch)
        writer.add_name(name or ckpt.extra.get("model_name") or Path(ckpt.source).stem or "model")
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(cfg.num_attention_heads)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_dimension_count(hd)
        if hd != cfg.hidden_size // cfg.num_attention_heads:
            writer.add_key_length(hd)
            writer.add_value_length(hd)
        writer.add_rope_freq_base(float(cfg.rope_theta))
        writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        writer.add_vocab_size(embed.shape[0])
        writer.add_file_type(int(gguf.LlamaFileType[_FILE_TYPES[_main_type(ckpt)]]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if copied is not None:
            for key, value, vtype, sub in copied:
                writer.add_key_value(key, value, vtype, sub)
        elif vocab is not None:
            _add_vocab(writer, vocab, embed.shape[0], tok, tok_source)
        for gname, array, raw_type in arrays:
            writer.add_tensor(gname, array, raw_dtype=raw_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path


def write_gguf_vocab(source_gguf, out_path) -> Path:
    """A vocabulary-only GGUF (no tensors): the tokenizer.* keys of source_gguf copied as they
    are, the way llama.cpp ships its vocab files. slmkit's folders of models read from GGUF keep
    their tokenizer this way (tokenizer.gguf)."""
    import gguf

    reader = gguf.GGUFReader(str(source_gguf), "r")
    arch = reader.fields.get("general.architecture")
    arch = bytes(arch.parts[arch.data[0]]).decode("utf-8") if arch is not None else "llama"
    with atomic_output_file(out_path) as tmp:
        writer = _fast_writer_class()(str(tmp), arch)
        for key, value, vtype, sub in _copy_gguf_tokenizer_keys(reader):
            writer.add_key_value(key, value, vtype, sub)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out_path)
