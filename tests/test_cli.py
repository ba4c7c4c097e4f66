"""The command line, run in-process on the real stories260K model and on random models."""
import json

import pytest

from slmkit.cli import main


def test_generate_streams_the_reference_text(stories_hf, capsys):
    assert main(["generate", "-m", str(stories_hf), "Once upon a time", "-n", "64", "--temp", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Once upon a time, there was a little girl named Lily.")
    assert out.rstrip("\n").endswith("Lily's mom said")


def test_quantize_then_info(stories_llama2c, tmp_path, capsys):
    out_dir = tmp_path / "stories-q4"
    assert main(["quantize", str(stories_llama2c), str(out_dir), "--bits", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["info", str(out_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["parameters"] == 260_032
    assert info["tensor_formats"] == {"q4_0": 35, "f32": 12}   # 7 linear x 5 layers; norms + tied embedding
    assert info["quantization"]["scheme"] == "q4_0"
    assert main(["generate", "-m", str(out_dir), "Once upon a time", "-n", "8", "--temp", "0"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")


@pytest.mark.parametrize("bad", [["-n", "-5"], ["--temp", "nan"], ["--top-p", "1.5"],
                                 ["--seed", "-1"], ["--top-k", "-3"]])
def test_bad_sampling_options_fail_before_any_output(stories_hf, capsys, bad):
    assert main(["generate", "-m", str(stories_hf), "Once upon a time", *bad]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("slmkit: error:") and err.count("\n") == 1


def test_a_full_context_is_announced(stories_hf, capsys):
    # stories260K holds 512 positions: asking for more stops there, and says so
    with pytest.warns(UserWarning, match="the context holds 512 tokens: the reply stops after"):
        assert main(["generate", "-m", str(stories_hf), "Once upon a time", "-n", "1000",
                     "--temp", "0"]) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")
    # on the command line a warning is one line, without Python's file and line
    from slmkit.cli import _format_warning
    assert _format_warning("the context is full", UserWarning, "x.py", 3) == \
        "slmkit: warning: the context is full\n"


def test_suggest_refuses_a_huge_k(stories_hf, capsys):
    assert main(["suggest", "-m", str(stories_hf), "Once upon a", "-k", "100000"]) == 2
    assert "k must be between 1 and 100" in capsys.readouterr().err


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slmkit: error:") and "nope" in err
    with pytest.raises(SystemExit):
        main(["quantize", "a", "b", "--bits", "3"])


def test_bench_prints_llama_bench_figures(stories_hf, capsys):
    assert main(["bench", str(stories_hf), "-p", "32", "-n", "8", "-r", "2", "-t", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"pp_tps", "tg_tps", "threads", "format", "kernel"} <= r.keys()
    assert r["threads"] == 2 and r["format"] == "f32" and r["kernel"] in ("avx512vnni", "avx2", "generic")
    assert r["pp_tps"] > 0 and r["tg_tps"] > 0 and len(r["pp_runs"]) == 2 and r["peak_rss_mb"] > 0
    assert r["kv_cache"] == "f32" and r["prefill_act"] == "int16" and r["repacked"] == 0
    assert main(["bench", "-m", str(stories_hf), "-p", "16", "-n", "0", "-r", "1", "--kv-cache", "int8"]) == 0
    table = capsys.readouterr().out
    assert "| pp16 " in table and "tg" not in table.split("\n")[2]
    assert "int8 KV cache" in table and "repacked" not in table
    assert main(["bench", str(stories_hf), "-p", "0", "-n", "0"]) == 2
    assert main(["bench", str(stories_hf), "-p", "600"]) == 2       # beyond the context of 512


def test_bench_reports_the_prefill_activations_in_effect(stories_hf, tmp_path, capsys):
    """int8 prefill activations apply to repacked weights: bench says what ran, and loading
    a model where the option changes nothing warns."""
    from slmkit import _native as nat
    assert main(["quantize", str(stories_hf), str(tmp_path / "q4"), "--bits", "4"]) == 0
    capsys.readouterr()
    simd = nat.kernel_name() != "generic"
    assert main(["bench", str(tmp_path / "q4"), "-p", "16", "-n", "0", "-r", "1", "--prefill-act",
                 "int8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["prefill_act"] == ("int8" if simd else "int16") and (r["repacked"] > 0) == simd
    with pytest.warns(UserWarning, match="changes nothing for this model"):
        assert main(["bench", str(stories_hf), "-p", "16", "-n", "0", "-r", "1", "--prefill-act",
                     "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prefill_act"] == "int16"
