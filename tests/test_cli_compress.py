"""The eval, compare and quantize commands, in-process, on the real stories260K model."""
import json

import pytest

from slmkit.cli import main
from slmkit.plotting import pareto_front, plotting_available


@pytest.fixture(scope="module")
def texts(tmp_path_factory, tinystories_text):
    """A text to score and a disjoint one to calibrate on."""
    folder = tmp_path_factory.mktemp("texts")
    (folder / "eval.txt").write_text(tinystories_text[:20000], encoding="utf-8")
    (folder / "calib.txt").write_text(tinystories_text[-30000:], encoding="utf-8")
    return folder


def test_eval_json(stories_hf, texts, tmp_path, capsys):
    assert main(["quantize", str(stories_hf), str(tmp_path / "q8"), "--bits", "8"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "q8"), "--text", str(texts / "eval.txt"), "--base",
                 str(stories_hf), "--ctx", "128", "--max-tokens", "1024", "--json"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert set(r) == {"ppl", "kl_mean", "kl_p99", "top1", "tokens"}
    assert r["tokens"] == 8 * 63            # 8 windows (BOS + 127 tokens), positions 64..126 scored
    assert 2 < r["ppl"] < 10 and 0 < r["kl_mean"] < 0.01 and r["top1"] > 0.9
    assert "windows" in captured.err         # the progress bar


def test_eval_without_base_and_its_errors(stories_hf, texts, tmp_path, capsys):
    assert main(["eval", str(stories_hf), "--text", str(texts / "eval.txt"), "--ctx", "128",
                 "--max-tokens", "512"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ppl ") and "KL" not in out
    assert main(["eval", str(stories_hf), "--text", str(texts / "eval.txt"), "--ctx", "1024"]) == 2
    assert "longer than the model's 512" in capsys.readouterr().err
    (tmp_path / "short.txt").write_text("Hi.")
    assert main(["eval", str(stories_hf), "--text", str(tmp_path / "short.txt")]) == 2
    assert "fewer than one window" in capsys.readouterr().err


def test_compare_writes_the_table_without_the_plot_extra(stories_hf, texts, tmp_path, capsys,
                                                         monkeypatch):
    import slmkit.plotting
    monkeypatch.setattr(slmkit.plotting, "plotting_available", lambda: False)
    out = tmp_path / "cmp"
    assert main(["compare", str(stories_hf), "--text", str(texts / "eval.txt"),
                 "--variants", "rtn8,rtn4-g128,gptq4-g128", "--calib", str(texts / "calib.txt"),
                 "--calib-tokens", "1024", "--ctx", "128", "--max-tokens", "2048",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| gptq4-g128 | rtn4-g128 | eval.txt |" in captured.out
    assert "matplotlib is not installed" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["compare.json", "compare.md"]
    record = json.loads((out / "compare.json").read_text())
    assert [r["variant"] for r in record["rows"]] == ["f32", "rtn8", "rtn4-g128", "gptq4-g128"]
    f32, rtn8 = record["rows"][0], record["rows"][1]
    assert f32["results"]["eval.txt"]["kl_mean"] == 0 and f32["results"]["eval.txt"]["top1"] == 1
    assert rtn8["size"] < f32["size"] / 2 and rtn8["linear_bits"] == pytest.approx(8.5, abs=0.5)
    assert record["rows"][2]["size"] == record["rows"][3]["size"]        # same format, same size
    assert (out / "compare.md").read_text() in captured.out
    from slmkit.compare import Comparison
    assert Comparison.from_dict(record).markdown() == (out / "compare.md").read_text()
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "compare.md").stat().st_mode & 0o777 == 0o666 & ~umask    # not mkstemp's 0600


@pytest.mark.skipif(not plotting_available(), reason="matplotlib (the [plot] extra) not installed")
def test_compare_draws_the_plot(stories_hf, texts, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(stories_hf), "--text", str(texts / "eval.txt"),
                 "--variants", "rtn8,rtn4-g32", "--ctx", "128", "--max-tokens", "1024",
                 "--out", str(out)]) == 0
    png = (out / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10000


def test_pareto_front():
    assert pareto_front([(1, 5.0), (2, 4.0), (3, 4.5), (4, 3.9), (0.5, 9)]) == \
        [(0.5, 9), (1, 5.0), (2, 4.0), (4, 3.9)]


def test_compare_errors(stories_hf, texts, tmp_path, capsys):
    base = ["compare", str(stories_hf), "--text", str(texts / "eval.txt"), "--out", str(tmp_path)]
    assert main(base + ["--variants", "gptq4-g128"]) == 2
    assert "need calibration text" in capsys.readouterr().err
    assert main(base + ["--variants", "gptq3"]) == 2
    assert "variant 'gptq3'" in capsys.readouterr().err
    assert main(base + ["--variants", "rtn4-g128-fast"]) == 2
    assert "unknown part 'fast'" in capsys.readouterr().err


def test_quantize_gptq_with_every_flag(stories_hf, texts, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["quantize", str(stories_hf), str(out), "--bits", "4", "--group", "64",
                 "--method", "gptq", "--calib", str(texts / "calib.txt"), "--calib-tokens", "1024",
                 "--act-order", "--mixed", "0.2", "--keep", "*.layers.0.mlp.down_proj.weight"]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "calibrated on 1024 tokens" in captured.out
    assert "peak RSS" in captured.out and "layers" in captured.err
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["method"] == "gptq" and q["group_size"] == 64 and q["act_order"] is True
    assert q["mixed_fraction"] == 0.2 and q["int8_tensors"]
    assert q["tensors"]["model.layers.1.mlp.down_proj.weight"]["type"] in ("q4_1", "q8_0")
    assert "model.layers.0.mlp.down_proj.weight" not in q["tensors"]      # kept: f32
    assert main(["generate", "-m", str(out), "Once upon a time", "-n", "4", "--temp", "0"]) == 0


def test_quantize_errors_are_one_clear_line(stories_hf, texts, tmp_path, capsys):
    src, out = str(stories_hf), str(tmp_path / "q")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["--method", "gptq", "--bits", "4"], "needs calibration text"),
        (["--method", "awq", "--bits", "4", "--calib", str(empty)], "calibration text is empty"),
        (["--method", "awq", "--bits", "4", "--calib", str(tmp_path / "none.txt")], "not found"),
        (["--bits", "4", "--act-order"], "act-order is a GPTQ option"),
        (["--bits", "4", "--calib", str(texts / "calib.txt")], "only used by gptq, awq"),
        (["--method", "nope"], "unknown compression technique 'nope'"),
        (["--bits", "4", "--mixed", "2", "--calib", str(texts / "calib.txt")], "fraction"),
    ]
    for flags, message in cases:
        assert main(["quantize", src, out] + flags) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("slmkit: error:") and message in err, (flags, err)
    assert not (tmp_path / "q").exists()
    with pytest.raises(SystemExit):
        main(["quantize", src, out, "--group", "96"])


def test_eval_measures_what_int8_prefill_costs(stories_hf, texts, tmp_path, capsys):
    """eval MODEL --base MODEL --prefill-act int8: the option's cost against the default."""
    from slmkit import _native as nat
    assert main(["quantize", str(stories_hf), str(tmp_path / "q4"), "--bits", "4"]) == 0
    capsys.readouterr()
    args = ["eval", str(tmp_path / "q4"), "--text", str(texts / "eval.txt"), "--base",
            str(tmp_path / "q4"), "--ctx", "128", "--max-tokens", "1024", "--json",
            "--prefill-act", "int8"]
    if nat.kernel_name() == "generic":                 # weights as stored: nothing changes
        with pytest.warns(UserWarning, match="changes nothing"):
            assert main(args) == 0
        assert json.loads(capsys.readouterr().out)["kl_mean"] == 0
        return
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert 0 < r["kl_mean"] < 0.01 and r["top1"] > 0.9, r
