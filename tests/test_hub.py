"""GPT-2 by name (gpt.hub) against a real HTTP server on 127.0.0.1 that speaks the hub's file protocol.

The server serves ``/{repo}/resolve/main/{file}``: small files with their git-blob ETag, the safetensors file
through a redirect whose response carries ``X-Linked-Etag`` (its sha256), ``Range`` requests answered with 206.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from gpt import GPT, GPTConfig
from gpt import hub
from gpt.hub import HubError, git_blob_sha1, resolve_model

REPO = hub.MODELS["gpt2"]


class _Hub(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    corrupt: set[str] = set()
    log: list[tuple[str, str, str | None]] = []

    def log_message(self, *args):   # quiet
        pass

    def _name(self) -> str | None:
        for prefix in (f"/{REPO}/resolve/main/", "/cdn/"):
            if self.path.startswith(prefix):
                return self.path[len(prefix):]
        return None

    def do_HEAD(self):
        self.log.append(("HEAD", self.path, None))
        name = self._name()
        if name not in self.files:
            self.send_response(404)
            self.end_headers()
            return
        data = self.files[name]
        if name.endswith(".safetensors") and not self.path.startswith("/cdn/"):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/cdn/{name}")
            self.send_header("X-Linked-Etag", '"%s"' % hashlib.sha256(data).hexdigest())
            self.send_header("X-Linked-Size", str(len(data)))
        else:
            self.send_response(200)
            self.send_header("ETag", '"%s"' % git_blob_sha1(data))
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_GET(self):
        rng = self.headers.get("Range")
        self.log.append(("GET", self.path, rng))
        name = self._name()
        if name not in self.files:
            self.send_response(404)
            self.end_headers()
            return
        if name.endswith(".safetensors") and not self.path.startswith("/cdn/"):
            self.send_response(302)
            self.send_header("Location", f"/cdn/{name}")
            self.end_headers()
            return
        data = self.files[name]
        if name in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    model = GPT(GPTConfig(block_size=8, vocab_size=17, n_layer=1, n_head=2, n_embd=8), seed=0)
    src = tmp_path / "src"
    model.save_pretrained(src)
    files = {f: (src / f).read_bytes() for f in ("config.json", "model.safetensors")}
    files["vocab.json"] = b'{"a": 0}'
    files["merges.txt"] = b"#version: 0.2\n"
    _Hub.files, _Hub.corrupt, _Hub.log = files, set(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield model, tmp_path / "cache" / "tinygpt" / "hub" / "gpt2"
    server.shutdown()
    server.server_close()


def test_a_name_downloads_verifies_and_loads(hub_server):
    model, folder = hub_server
    path = resolve_model("gpt2", progress=False)
    assert path == folder
    assert sorted(p.name for p in path.iterdir()) == sorted(hub.FILES)   # no .incomplete left
    loaded = GPT.from_pretrained(path)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), loaded.named_parameters()):
        assert n1 == n2
        np.testing.assert_array_equal(p1.data, p2.data)
    # a second call uses the cache: no request at all
    before = len(_Hub.log)
    assert resolve_model("gpt2", progress=False) == folder
    assert len(_Hub.log) == before


def test_a_partial_download_resumes_with_a_range_request(hub_server):
    _, folder = hub_server
    folder.mkdir(parents=True)
    data = _Hub.files["model.safetensors"]
    (folder / "model.safetensors.incomplete").write_bytes(data[:100])
    resolve_model("gpt2", progress=False)
    assert ("GET", "/cdn/model.safetensors", "bytes=100-") in _Hub.log
    assert (folder / "model.safetensors").read_bytes() == data


def test_a_file_that_does_not_match_the_hubs_hash_is_refused_and_deleted(hub_server):
    _, folder = hub_server
    _Hub.corrupt = {"model.safetensors"}
    with pytest.raises(HubError, match="does not match the hub's sha256"):
        resolve_model("gpt2", progress=False)
    assert not (folder / "model.safetensors").exists()
    assert not (folder / "model.safetensors.incomplete").exists()


def test_offline_says_where_to_put_a_folder(hub_server, monkeypatch):
    _, folder = hub_server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set.*put a folder") as e:
        resolve_model("gpt2", progress=False)
    assert "\n" not in str(e.value) and str(folder) in str(e.value)
    assert not _Hub.log                       # no request was made


def test_no_network_gives_one_line_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                 # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubError, match="cannot download") as e:
        resolve_model("gpt2-medium", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "cache" / "tinygpt" / "hub" / "gpt2-medium").exists()


def test_an_unknown_name_lists_the_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder .*gpt2, gpt2-medium, gpt2-large, gpt2-xl"):
        resolve_model(str(tmp_path / "nope"))


def test_git_blob_sha1_matches_git():
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_save_pretrained_writes_the_tokenizer_so_the_folder_is_self_contained(tmp_path):
    from gpt.data import load_tokenizer
    from tokenizer import CharTokenizer
    tok = CharTokenizer.from_text("hello world")
    model = GPT(GPTConfig(block_size=8, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=8), seed=0)
    d = model.save_pretrained(tmp_path / "m", tokenizer=tok)
    assert (d / "tinygpt-tokenizer.json").is_file()
    back = load_tokenizer(d)
    assert back.encode("hello") == tok.encode("hello")
    loaded = GPT.from_pretrained(d)
    np.testing.assert_array_equal(loaded.transformer.wte.weight.data, model.transformer.wte.weight.data)


def test_save_pretrained_of_a_gpt2_sized_model_copies_gpt2s_tokenizer_files(tmp_path):
    from tokenizer.gpt2 import gpt2_files
    try:
        encoder_json, vocab_bpe = gpt2_files(download=False)
    except FileNotFoundError:
        pytest.skip("needs GPT-2's encoder.json and vocab.bpe: set TINYGPT_DATA to a folder with gpt2/ in it")
    from gpt.data import load_tokenizer
    model = GPT(GPTConfig(block_size=4, vocab_size=50257, n_layer=1, n_head=1, n_embd=4), seed=0)
    d = model.save_pretrained(tmp_path / "g")
    assert (d / "vocab.json").read_bytes() == Path(encoder_json).read_bytes()
    assert (d / "merges.txt").read_bytes() == Path(vocab_bpe).read_bytes()
    assert load_tokenizer(d).encode("hello world") == [31373, 995]
