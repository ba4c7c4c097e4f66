"""Sampling and the generation loop on random models: greedy = top_k 1, seeds repeat, the KV
cache gives the same logits as a full forward pass, streaming = generate, stop strings."""
import numpy as np
import pytest

from slmkit.generate import StreamDecoder, _held_back, _stop_at
from slmkit.loading import model_from_checkpoint
from slmkit.sampling import Sampler, SamplingParams
from utils import random_checkpoint


@pytest.fixture(scope="module", params=["cpu", "numpy"])
def model(request):
    return model_from_checkpoint(random_checkpoint(seed=11), request.param, threads=2)


def test_kv_cache_decode_equals_full_forward(model):
    ids = [1, 40, 41, 42, 43, 44, 45, 46, 47]
    full = model.logits(ids)
    cache = model.arch.new_cache()
    step = [model.arch.forward(ids[:4], cache)]
    for t in ids[4:]:
        step.append(model.arch.forward([t], cache))
    tol = 1e-9 if model.backend.name == "numpy" else 2e-4
    np.testing.assert_allclose(np.stack(step), full[3:], atol=tol)


def test_greedy_equals_top_k_one(model):
    greedy = model.generate_ids([1, 50], max_new_tokens=12, temperature=0)
    topk1 = model.generate_ids([1, 50], max_new_tokens=12, temperature=0.7, top_k=1, seed=3)
    assert greedy == topk1 and len(greedy) > 0


def test_seed_repeats_and_differs(model):
    a = model.generate_ids([1, 50], max_new_tokens=20, temperature=1.5, top_k=0, top_p=1.0, min_p=0, seed=1)
    b = model.generate_ids([1, 50], max_new_tokens=20, temperature=1.5, top_k=0, top_p=1.0, min_p=0, seed=1)
    c = model.generate_ids([1, 50], max_new_tokens=20, temperature=1.5, top_k=0, top_p=1.0, min_p=0, seed=2)
    assert a == b and a != c


def test_stream_concatenates_to_generate(model):
    pieces = list(model.stream("ab", max_new_tokens=16, temperature=0))
    assert "".join(pieces) == model.generate("ab", max_new_tokens=16, temperature=0)


def test_generation_allocates_the_cache_it_needs(model, monkeypatch):
    # a full-context cache costs hundreds of MB on real models once its pages are touched
    sizes = []
    new_cache = model.arch.new_cache
    monkeypatch.setattr(model.arch, "new_cache", lambda n=None: sizes.append(n) or new_cache(n))
    model.generate_ids([1, 50, 51], max_new_tokens=7, temperature=0)
    assert sizes == [10]


def test_context_overflow_is_clear(model):
    with pytest.raises(ValueError, match="context"):
        model.generate_ids([1] * 200, max_new_tokens=5, temperature=0)


def test_sampler_filters():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    draws = lambda **kw: {Sampler(SamplingParams(seed=s, temperature=1.0, **kw))(logits) for s in range(200)}  # noqa: E731
    assert draws(top_k=2, top_p=1.0, min_p=0) == {0, 1}
    assert draws(top_k=0, top_p=0.7, min_p=0) == {0, 1}        # 0.5 + 0.3 reaches 0.7
    assert draws(top_k=0, top_p=1.0, min_p=0.25) == {0, 1, 2}   # 0.05 < 0.25 * 0.5
    assert draws(top_k=0, top_p=1.0, min_p=0) == {0, 1, 2, 3}


def test_repetition_penalty_discourages_repeats():
    logits = np.array([2.0, 1.9, -1.0])
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=1.5))
    assert s(logits, history=[]) == 0
    assert s(logits, history=[0]) == 1          # 2.0/1.5 < 1.9


def test_bad_sampling_values():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            SamplingParams(temperature=bad)
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(top_k=-3)
    with pytest.raises(ValueError, match="repetition_penalty"):
        SamplingParams(repetition_penalty=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        SamplingParams(seed=-1)


def test_stop_string_helpers():
    assert _stop_at("hello world", ["wor"]) == 6
    assert _stop_at("hello", ["xyz"]) is None
    assert _held_back("hello wo", ["world"]) == 2
    assert _held_back("hello", ["world"]) == 0


class FakeTokenizer:
    """ids are characters; id 0 is the first half of a 2-byte character."""
    def decode(self, ids):
        return "".join("\ufffd" if i == 0 and k == len(ids) - 1 else chr(i) if i else "" for k, i in enumerate(ids))


def test_stream_decoder_holds_back_incomplete_characters():
    d = StreamDecoder(FakeTokenizer(), [ord("x")])
    d.push(ord("a"))
    assert d.text() == "a"
    d.push(0)
    assert d.text().endswith("\ufffd")


def test_stop_strings_cut_the_output(model):
    full = model.generate("ab", max_new_tokens=24, temperature=0)
    if len(full) < 4:
        pytest.skip("random model produced too little text")
    stop = full[2:4]
    cut = model.generate("ab", max_new_tokens=24, temperature=0, stop=[stop])
    assert cut == full[:full.find(stop)]
    assert "".join(model.stream("ab", max_new_tokens=24, temperature=0, stop=[stop])) == cut
