"""GGUF export: what slmkit writes reads back (with slmkit, and with llama.cpp where the
llama-cpp-python package is installed) to the same model, tensors and tokenizer."""
import json
import shutil
import warnings

import numpy as np
import pytest

import slmkit
from slmkit.cli import main
from slmkit.formats.gguf import read_gguf
from slmkit.formats.gguf_write import rope_row_order, write_gguf
from slmkit.loading import model_from_checkpoint
from test_stories_model import GREEDY_64, PROMPT_IDS
from utils import ByteTokenizer, random_checkpoint, shared_path

IDS = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100]


def _logits(ckpt, tokenizer=None):
    model = model_from_checkpoint(ckpt, "cpu", threads=2, tokenizer=tokenizer or ByteTokenizer())
    return model.logits(IDS)


def _export_quietly(ckpt, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # random models have no vocabulary to write
        return write_gguf(ckpt, path, **kw)


def test_rope_row_order_is_a_permutation_and_its_inverse():
    to_i = rope_row_order(3, 8, True)
    back = rope_row_order(3, 8, False)
    assert sorted(to_i) == list(range(24))
    assert np.array_equal(to_i[back], np.arange(24))
    # head 0: interleaved rows (0,1,2,3,...) come from rotate-half rows (0,4,1,5,...)
    assert to_i[:8].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_0", "q4_1"])
@pytest.mark.parametrize("tied", [False, True])
def test_random_model_round_trip_gives_the_same_logits(tmp_path, wtype, tied):
    ckpt = random_checkpoint(seed=3, wtype=wtype, tie_word_embeddings=tied)
    if tied:
        ckpt.tensors.pop("lm_head.weight", None)
    path = _export_quietly(ckpt, tmp_path / "m.gguf")
    back = read_gguf(path)
    assert back.config.rope_interleaved and back.config.tie_word_embeddings == tied
    for name in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                 "vocab_size", "head_dim"):
        assert getattr(back.config, name) == getattr(ckpt.config, name), name
    # blocks are written as they are: q rows are the source rows, reordered
    q = "model.layers.1.self_attn.q_proj.weight"
    order = rope_row_order(ckpt.config.num_attention_heads, ckpt.config.head_dim, True)
    assert back[q].wtype == wtype
    assert np.array_equal(np.asarray(back[q].data), np.asarray(ckpt[q].data)[order])
    v = "model.layers.0.mlp.down_proj.weight"
    assert np.array_equal(np.asarray(back[v].data), np.asarray(ckpt[v].data))
    ref, got = _logits(ckpt), _logits(back)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_interleaved_source_is_not_permuted(tmp_path):
    ckpt = random_checkpoint(seed=4, wtype="q8_0", rope_interleaved=True)
    back = read_gguf(_export_quietly(ckpt, tmp_path / "m.gguf"))
    k = "model.layers.0.self_attn.k_proj.weight"
    assert np.array_equal(np.asarray(back[k].data), np.asarray(ckpt[k].data))
    assert np.abs(_logits(back) - _logits(ckpt)).max() <= 1e-4 * np.abs(_logits(ckpt)).max()


def test_qwen2_keeps_rotate_half_rows_and_biases(tmp_path):
    ckpt = random_checkpoint(seed=5, wtype="q4_0", architecture="Qwen2ForCausalLM", attention_bias=True)
    assert "model.layers.0.self_attn.q_proj.bias" in ckpt
    back = read_gguf(_export_quietly(ckpt, tmp_path / "m.gguf"))
    assert back.config.architecture == "Qwen2ForCausalLM" and not back.config.rope_interleaved
    ref = _logits(ckpt)
    assert np.abs(_logits(back) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_rows_that_are_not_whole_blocks_are_written_as_f32(tmp_path):
    ckpt = random_checkpoint(seed=6, wtype="q8_0", intermediate_size=80)
    with pytest.warns(UserWarning, match=r"down_proj.weight \(q8_0, rows of 80 values\)"):
        path = write_gguf(ckpt, tmp_path / "m.gguf")
    back = read_gguf(path)
    down = "model.layers.0.mlp.down_proj.weight"
    assert back[down].wtype == "f32" and back["model.layers.0.mlp.up_proj.weight"].wtype == "q8_0"
    assert np.array_equal(back[down].to_float32(), ckpt[down].to_float32())   # exact values
    ref = _logits(ckpt)
    # f32 weights skip the 8-bit activation rounding of the block kernels: close, not identical
    assert np.abs(_logits(back) - ref).max() <= 0.02 * np.abs(ref).max()


def test_export_refuses_to_overwrite_its_source_and_leaves_nothing_on_error(tmp_path, stories_hf):
    with pytest.raises(ValueError, match="overwrite or sit inside"):
        slmkit.export(stories_hf, stories_hf / "x.gguf")
    ckpt = random_checkpoint(seed=7)
    ckpt.tensors["model.layers.0.weird.weight"] = ckpt.tensors["model.norm.weight"]
    with pytest.raises(slmkit.errors.UnsupportedModelError, match="weird"):
        _export_quietly(ckpt, tmp_path / "bad.gguf")
    assert list(tmp_path.iterdir()) == []


# ---- real models ---------------------------------------------------------------------------

def test_stories_model_from_hf_exports_to_the_reference_greedy_tokens(stories_hf, tmp_path):
    path = slmkit.export(stories_hf, tmp_path / "s.gguf")
    model = slmkit.load(path, threads=2)
    assert model.tokenizer.model_kind == "llama"
    assert model.tokenizer.encode("Once upon a time") == PROMPT_IDS
    assert model.generate_ids(PROMPT_IDS, max_new_tokens=64, temperature=0) == GREEDY_64


@pytest.mark.parametrize("keep", ["tokenizer.model", "tokenizer.json"])
def test_hf_tokenizer_files_become_llama_cpp_vocabularies(stories_hf, tinystories_text, tmp_path, keep):
    folder = tmp_path / "src"
    shutil.copytree(stories_hf, folder)
    (folder / ("tokenizer.json" if keep == "tokenizer.model" else "tokenizer.model")).unlink()
    model = slmkit.load(slmkit.export(folder, tmp_path / "s.gguf"), threads=2)
    reference = slmkit.load_tokenizer(stories_hf)
    text = tinystories_text[:3000]
    assert model.tokenizer.encode(text) == reference.encode(text)
    assert model.tokenizer.bos_id == 1 and model.tokenizer.eos_ids == {2}


def test_stories_model_from_llama2c_keeps_its_tokenizer(stories_llama2c, tinystories_text, tmp_path):
    path = slmkit.export(stories_llama2c, tmp_path / "s.gguf")
    model = slmkit.load(path, threads=2)
    reference = slmkit.load(stories_llama2c, threads=2)
    text = tinystories_text[:3000]
    assert model.tokenizer.encode(text) == reference.tokenizer.encode(text)
    ref = reference.logits(PROMPT_IDS)
    assert np.abs(model.logits(PROMPT_IDS) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_gpt2_tokenizer_json_becomes_a_gpt2_vocabulary(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    gpt2 = shared_path("tokenizers", "gpt2")
    text = shared_path("corpora", "wikitext2-test.raw").read_text(encoding="utf-8")[:4000]
    tok = Tokenizer(models.BPE.from_file(str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    folder = tmp_path / "tok"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>",
                                                              "add_bos_token": False}))
    ckpt = random_checkpoint(seed=8, wtype="q8_0", vocab_size=50257, tie_word_embeddings=True)
    ckpt.tensors.pop("lm_head.weight", None)
    path = write_gguf(ckpt, tmp_path / "m.gguf", tokenizer_from=folder)
    model = slmkit.load(path, threads=2)
    reference = slmkit.load_tokenizer(folder)
    assert model.tokenizer.model_kind == "gpt2" and model.tokenizer.pre_tokenizer_name == "gpt-2"
    assert model.tokenizer.encode(text) == reference.encode(text)
    assert model.tokenizer.eos_ids == {50256}


def test_smollm2_gguf_exports_to_identical_logits_and_metadata(tmp_path):
    from slmkit.hub import find_smollm2_gguf
    src = find_smollm2_gguf()
    if src is None:
        pytest.skip("SmolLM2-135M-Instruct GGUF not cached (slmkit.hub.pull('smollm2-135m-instruct'))")
    path = slmkit.export(src, tmp_path / "smol.gguf")
    a, b = read_gguf(src), read_gguf(path)
    assert a.tensors.keys() == b.tensors.keys()
    for name, t in a.tensors.items():
        assert b[name].wtype == t.wtype and np.array_equal(np.asarray(b[name].data), np.asarray(t.data)), name
    ra, rb = a.extra["gguf_reader"], b.extra["gguf_reader"]
    keys = sorted(k for k in ra.fields if k.startswith("tokenizer."))
    assert keys == sorted(k for k in rb.fields if k.startswith("tokenizer."))
    for key in keys:
        fa, fb = ra.fields[key], rb.fields[key]
        assert [bytes(fa.parts[i]) for i in fa.data] == [bytes(fb.parts[i]) for i in fb.data], key
    ma, mb = model_from_checkpoint(a, threads=2), model_from_checkpoint(b, threads=2)
    ids = ma.encode("The capital of France is")
    assert mb.encode("The capital of France is") == ids
    assert np.array_equal(ma.logits(ids), mb.logits(ids))


def test_cli_export(stories_llama2c, tmp_path, capsys):
    out = tmp_path / "s.gguf"
    assert main(["export", str(stories_llama2c), str(out), "--to", "gguf"]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    with pytest.raises(SystemExit):
        main(["export", str(stories_llama2c), str(tmp_path / "x"), "--to", "onnx"])


# ---- llama.cpp as the peer -----------------------------------------------------------------

def _llama_cpp_greedy(path, prompt_ids, n):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, verbose=False,
                          logits_all=False, seed=0)
    out = []
    for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        out.append(int(token))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("quantised", [False, True])
def test_llama_cpp_greedy_tokens_equal_slmkit(stories_hf, tmp_path, quantised):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    src = stories_hf
    if quantised:
        from slmkit.compression import quantize
        src = quantize(stories_hf, tmp_path / "q8", bits=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = slmkit.export(src, tmp_path / "s.gguf")
    ours = slmkit.load(path, threads=2).generate_ids(PROMPT_IDS, max_new_tokens=32, temperature=0)
    assert _llama_cpp_greedy(path, PROMPT_IDS, 32) == ours


def test_gguf_vocabulary_survives_quantize_and_export(tmp_path):
    """A GGUF model quantised into an slmkit folder keeps its vocabulary (as a vocabulary-only
    tokenizer.gguf) and exporting that folder to GGUF writes the vocabulary back."""
    from slmkit.compression import quantize
    from slmkit.formats.gguf import open_gguf
    vocab = shared_path("tokenizers", "vectors", "ggml-vocab-gpt-2.gguf")
    tok = slmkit.load_tokenizer(vocab)
    ckpt = random_checkpoint(seed=8, vocab_size=tok.vocab_size, tie_word_embeddings=True)
    src = write_gguf(ckpt, tmp_path / "m.gguf", tokenizer_from=vocab)
    folder = quantize(src, tmp_path / "q", bits=8)
    assert (folder / "tokenizer.gguf").is_file()
    model = slmkit.load(folder)
    text = "Hello world, it's 2026!"
    assert model.encode(text) == tok.encode(text)
    out = slmkit.export(folder, tmp_path / "back.gguf")
    keys = {k for k in open_gguf(out).fields if k.startswith("tokenizer.")}
    assert keys == {k for k in open_gguf(vocab).fields if k.startswith("tokenizer.")}
    assert slmkit.load(out).encode(text) == tok.encode(text)

