"""GPT-2's files (encoder.json + vocab.bpe): exact ids and tiktoken parity; checksummed atomic downloads.

The GPT-2 tests use the real files in ``$TINYGPT_DATA/gpt2/`` and skip with a reason when they are
absent. tiktoken cannot download here, so its Encoding is built from the ranks *we* read from the files:
``tiktoken.Encoding(pat_str=r50k, mergeable_ranks=ours.to_tiktoken_ranks())``. The download tests use
``file://`` URLs or a closed port on 127.0.0.1, so they need no network.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizer
from tinytensor.errors import UsageError
from tinytensor.fileio import download_file, sha256_file
from tokenizer import BPETokenizer, bytes_to_unicode, gpt2_files, load_gpt2
from tokenizer.gpt2 import ENCODER_JSON_SHA256, VOCAB_BPE_SHA256, GPT2DownloadError

tiktoken = pytest.importorskip("tiktoken")

_DATA = os.environ.get("TINYGPT_DATA")
_GPT2_DIR = Path(_DATA) / "gpt2" if _DATA else None
_HAVE_GPT2 = _GPT2_DIR is not None and (_GPT2_DIR / "encoder.json").is_file() and (_GPT2_DIR / "vocab.bpe").is_file()
needs_gpt2 = pytest.mark.skipif(
    not _HAVE_GPT2,
    reason="needs GPT-2's encoder.json and vocab.bpe in $TINYGPT_DATA/gpt2 (TINYGPT_DATA unset or files absent)",
)

TEXTS = [
    "hello world",
    "Hello, do you like tea? In the sunlit terraces of the palace.",
    "It's 2024; we'll see   you\tthere!!\n\n\nBye\r\n",
    "Café naïve 東京 Привет 👨\u200d👩\u200d👧 e\u0301 \x00 \u00a0 \u3000",
    "'S 'LL 're 'd 1234567 ...",
    "",
]


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return load_gpt2(_GPT2_DIR / "encoder.json", _GPT2_DIR / "vocab.bpe")


@pytest.fixture(scope="module")
def gpt2_enc(gpt2):
    return gpt2.to_tiktoken("gpt2-from-our-ranks")


def test_bytes_to_unicode():
    m = bytes_to_unicode()
    assert len(m) == 256 and len(set(m.values())) == 256
    assert m[ord("!")] == "!" and m[ord(" ")] == "Ġ" and m[0] == "Ā" and m[ord("\n")] == "Ċ"
    assert all(ch.isprintable() and not ch.isspace() for ch in m.values())


@needs_gpt2
def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("hello world") == [31373, 995]
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.vocab_size == 50257
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert gpt2.encode("<|endoftext|>", disallowed_special=()) == [27, 91, 437, 1659, 5239, 91, 29]
    assert gpt2.encode("Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace.",
                       allowed_special={"<|endoftext|>"}) == [
        15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286, 617, 34680,
        27271, 13,
    ]
    assert gpt2.decode([15496, 11, 995]) == "Hello, world"


@needs_gpt2
def test_gpt2_files_in_data_dir_have_the_known_checksums():
    assert sha256_file(_GPT2_DIR / "encoder.json") == ENCODER_JSON_SHA256
    assert sha256_file(_GPT2_DIR / "vocab.bpe") == VOCAB_BPE_SHA256
    assert gpt2_files(download=False) == (_GPT2_DIR / "encoder.json", _GPT2_DIR / "vocab.bpe")


@needs_gpt2
def test_gpt2_merges_follow_vocab_bpe(gpt2):
    merges = gpt2.merges
    assert len(merges) == 50000
    assert all(new == 256 + i for i, (_, _, new) in enumerate(merges))
    assert merges[0] == (220, 83, 256)  # "Ġ t": the first merge line of vocab.bpe


@needs_gpt2
@pytest.mark.parametrize("text", TEXTS)
def test_gpt2_parity_fixed_texts(gpt2, gpt2_enc, text):
    assert gpt2.encode(text) == gpt2_enc.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == text


@needs_gpt2
@settings(deadline=None)
@given(s=st.text())
def test_gpt2_parity_hypothesis(gpt2, gpt2_enc, s):
    ids = gpt2.encode(s, disallowed_special=())
    assert ids == gpt2_enc.encode(s, disallowed_special=())
    assert gpt2.decode(ids) == s


@needs_gpt2
def test_gpt2_parity_on_shakespeare(gpt2, gpt2_enc):
    path = Path(_DATA) / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip("needs $TINYGPT_DATA/tinyshakespeare.txt")
    text = path.read_text(encoding="utf-8")[:300_000]
    assert gpt2.encode_ordinary(text) == gpt2_enc.encode_ordinary(text)


@needs_gpt2
def test_gpt2_hostile(gpt2, gpt2_enc):
    for text in ["a" * 100_000, " " * 100_000, "\n" * 100_000, "'s" * 100_000, "\ud800", "x\ud83d\ude00y"]:
        assert gpt2.encode(text) == gpt2_enc.encode(text)
    ids = gpt2.encode("東")  # 3 bytes, E6 9D B1, as two tokens: E6 9D | B1
    assert len(ids) == 2 and gpt2.decode(ids) == "東"
    assert gpt2.decode(ids[:1]) == "\ufffd"  # ends mid-character
    with pytest.raises(ValueError, match="50257"):
        gpt2.decode([50257])


@needs_gpt2
def test_gpt2_save_load_round_trip(gpt2, tmp_path):
    back = tokenizer.load(gpt2.save(tmp_path / "gpt2.json"))
    assert back.special_tokens == gpt2.special_tokens
    assert back.to_tiktoken_ranks() == gpt2.to_tiktoken_ranks()  # GPT-2's byte ids are not byte values
    for text in TEXTS:
        assert back.encode(text) == gpt2.encode(text)


@needs_gpt2
def test_load_gpt2_from_folder_and_default_paths(monkeypatch):
    assert load_gpt2(_GPT2_DIR).encode("hello world") == [31373, 995]
    monkeypatch.setenv("TINYGPT_DATA", _DATA)
    assert load_gpt2().encode("hello world") == [31373, 995]


def _fake_gpt2(folder: Path, merges: list[str]) -> None:
    b2u = bytes_to_unicode()
    encoder = {b2u[b]: i for i, b in enumerate(range(256))}
    for i, line in enumerate(merges):
        encoder[line.replace(" ", "")] = 256 + i
    encoder["<|endoftext|>"] = 256 + len(merges)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (folder / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def test_load_gpt2_format_on_tiny_files(tmp_path):
    _fake_gpt2(tmp_path, ["h e", "l l", "he ll", "Ġ w"])
    tok = load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert tok.special_tokens == {"<|endoftext|>": 260}
    assert tok.decode(tok.encode("hell w")) == "hell w"
    ids = tok.encode("hello w")
    assert ids == [258, ord("o"), 259]  # chunk "hello": he, ll, then hell; chunk " w" is one token
    assert tok.to_tiktoken().encode("hello w") == ids


def test_load_gpt2_rejects_inconsistent_files(tmp_path):
    _fake_gpt2(tmp_path, ["h e"])
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nh e\nx y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.bpe:3"):
        load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nhe\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected 'left right'"):
        load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    with pytest.raises(ValueError, match="both"):
        load_gpt2(tmp_path / "encoder.json", None)


def test_gpt2_files_checksum_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYGPT_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="TINYGPT_DATA"):
        gpt2_files(download=False)
    _fake_gpt2(tmp_path / "data" / "gpt2", ["h e"])
    with pytest.raises(ValueError, match="wrong sha256"):
        gpt2_files(download=False)


def test_download_file_is_checksummed_and_atomic(tmp_path):
    src = tmp_path / "src.bin"
    payload = os.urandom(300_000)
    src.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest_dir = tmp_path / "cache"

    with pytest.raises(ValueError, match="checksum mismatch"):
        download_file(src.as_uri(), dest_dir / "f.bin", "0" * 64)
    assert not dest_dir.exists()  # the temp file is gone, and so is the folder made for it

    out = download_file(src.as_uri(), dest_dir / "f.bin", digest)
    assert out.read_bytes() == payload
    assert [p.name for p in dest_dir.iterdir()] == ["f.bin"]

    # already there with the right checksum: nothing is fetched (the URL is not even valid)
    assert download_file("file:///nonexistent/nowhere", dest_dir / "f.bin", digest) == out

    # a corrupt existing file is replaced
    out.write_bytes(b"corrupt")
    download_file(src.as_uri(), dest_dir / "f.bin", digest)
    assert out.read_bytes() == payload


def test_download_failure_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "d" / "e" / "f.bin", "0" * 64)
    assert list(tmp_path.iterdir()) == []          # no empty folders made for the file
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(OSError):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "d" / "f.bin", "0" * 64)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["keep.txt"]   # a folder that was there stays


def _closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 at a port nothing listens on: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def gpt2_offline(tmp_path, monkeypatch):
    """No GPT-2 files anywhere, and their URLs unreachable; returns the cache root ($XDG_CACHE_HOME)."""
    monkeypatch.setattr(tokenizer.gpt2, "_GPT2_FILES", {
        "encoder.json": (_closed_port_url("encoder.json"), ENCODER_JSON_SHA256),
        "vocab.bpe": (_closed_port_url("vocab.bpe"), VOCAB_BPE_SHA256)})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYGPT_DATA", raising=False)
    return tmp_path / "cache"


def test_gpt2_files_offline_is_one_clear_error_and_leaves_no_folder(gpt2_offline):
    with pytest.raises(GPT2DownloadError, match="downloading http://127.0.0.1.*encoder.json failed") as e:
        gpt2_files()
    assert isinstance(e.value, UsageError) and "TINYGPT_DATA" in str(e.value)
    assert not gpt2_offline.exists()


def test_tokenizer_encode_gpt2_offline_prints_one_line(gpt2_offline, capsys):
    from tokenizer import cli
    assert cli.main(["encode", "--gpt2", "--text", "hello"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("tinygpt: error: GPT-2's encoder.json")
    assert "Traceback" not in err and "URLError" not in err
    assert not gpt2_offline.exists()


def test_train_with_gpt2_tokenizer_offline_prints_one_line(gpt2_offline, tmp_path, capsys):
    from gpt.cli import main
    text = tmp_path / "input.txt"
    text.write_text("hello world\n" * 50, encoding="utf-8")
    rc = main(["train", "--preset", "tiny", "--data", str(text), "--out_dir", str(tmp_path / "out"),
               "--tokenizer=gpt2", "--no_progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "downloading" in err and "TINYGPT_DATA" in err
    assert not gpt2_offline.exists() and not (tmp_path / "out").exists()


def test_gpt2_files_downloads_into_cache(tmp_path, monkeypatch):
    """With nothing local, the files are fetched from the (here: file://) URLs and checked."""
    _fake_gpt2(tmp_path / "origin", ["h e"])
    enc, bpe = tmp_path / "origin" / "encoder.json", tmp_path / "origin" / "vocab.bpe"
    monkeypatch.setattr(
        tokenizer.gpt2,
        "_GPT2_FILES",
        {
            "encoder.json": (enc.as_uri(), sha256_file(enc)),
            "vocab.bpe": (bpe.as_uri(), sha256_file(bpe)),
        },
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TINYGPT_DATA", raising=False)
    paths = gpt2_files()
    assert paths == (tmp_path / "cache" / "tinygpt" / "gpt2" / "encoder.json",
                     tmp_path / "cache" / "tinygpt" / "gpt2" / "vocab.bpe")
    assert load_gpt2().encode("he") == [256]
