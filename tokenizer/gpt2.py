"""OpenAI's published tokenizer files: GPT-2's ``encoder.json`` + ``vocab.bpe``, and ``.tiktoken`` rank files.

Where the GPT-2 files come from (:func:`gpt2_files`): ``$TINYGPT_DATA/gpt2/`` if it has them, else a
download cache (``$XDG_CACHE_HOME/tinygpt/gpt2`` or ``~/.cache/tinygpt/gpt2``), filled from OpenAI's public
location on first use. Downloads are atomic (temp file, fsync, ``os.replace``) and checked against the
known SHA-256.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from tinytensor.errors import ConfigError, FileFormatError, UsageError
from tinytensor.fileio import atomic_write_text, cache_dir, download_file, sha256_file

from .bpe import GPT2_PATTERN, BPETokenizer

__all__ = [
    "ENCODER_JSON_SHA256",
    "ENCODER_JSON_URL",
    "GPT2DownloadError",
    "GPT2_ENDOFTEXT",
    "VOCAB_BPE_SHA256",
    "VOCAB_BPE_URL",
    "bytes_to_unicode",
    "gpt2_files",
    "load_gpt2",
    "load_tiktoken_ranks",
    "save_tiktoken_ranks",
]

ENCODER_JSON_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models/124M/encoder.json"
VOCAB_BPE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models/124M/vocab.bpe"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENDOFTEXT = "<|endoftext|>"

_GPT2_FILES = {
    "encoder.json": (ENCODER_JSON_URL, ENCODER_JSON_SHA256),
    "vocab.bpe": (VOCAB_BPE_URL, VOCAB_BPE_SHA256),
}


class GPT2DownloadError(UsageError):
    """GPT-2's tokenizer files are not on this machine and could not be downloaded (offline, a firewall)."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, used to write bytes in its JSON files.

    Printable Latin-1 bytes map to themselves; the other 68 (control bytes, space, ...) map, in byte
    order, to ``chr(256)``, ``chr(257)``, ... So a leading space shows as ``Ġ`` (U+0120).

    Example:
        >>> m = bytes_to_unicode()
        >>> m[ord("A")], m[ord(" ")], m[ord("\\n")], len(set(m.values()))
        ('A', 'Ġ', 'Ċ', 256)
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(mapping.items()))


def gpt2_files(*, download: bool = True) -> tuple[Path, Path]:
    """Find (or fetch) GPT-2's ``encoder.json`` and ``vocab.bpe``; returns their paths.

    Looks in ``$TINYGPT_DATA/gpt2/`` first, then in the download cache; with ``download=True`` missing
    files are fetched into the cache from OpenAI's public location. Every file is checked against the
    known SHA-256.

    Raises:
        FileNotFoundError: the files are not local and ``download`` is False.
        GPT2DownloadError: the files are not local and the download failed (one line: where to put them).
        ValueError: a file has the wrong checksum.
    """
    folders = []
    if os.environ.get("TINYGPT_DATA"):
        folders.append(Path(os.environ["TINYGPT_DATA"]) / "gpt2")
    folders.append(cache_dir("gpt2"))
    found: list[Path] = []
    for name, (url, sha) in _GPT2_FILES.items():
        path = next((d / name for d in folders if (d / name).is_file()), None)
        if path is None:
            if not download:
                raise FileNotFoundError(
                    f"GPT-2 {name} not found in {' or '.join(map(str, folders))}; set TINYGPT_DATA to a "
                    "folder with gpt2/encoder.json and gpt2/vocab.bpe, or allow the download"
                )
            try:
                path = download_file(url, cache_dir("gpt2") / name, sha)
            except OSError as e:   # URLError is an OSError; its reason is the readable part
                raise GPT2DownloadError(
                    f"GPT-2's {name} is not in {' or '.join(map(str, folders))} and downloading {url} failed "
                    f"({getattr(e, 'reason', None) or e}); set TINYGPT_DATA to a folder with gpt2/encoder.json "
                    f"and gpt2/vocab.bpe, or copy the two files into {cache_dir('gpt2')}"
                ) from None
        elif sha256_file(path) != sha:
            raise FileFormatError(f"{path} has the wrong sha256 (expected {sha}); is it GPT-2's {name}?")
        found.append(path)
    return found[0], found[1]


def load_gpt2(
    encoder_json_path: str | os.PathLike[str] | None = None,
    vocab_bpe_path: str | os.PathLike[str] | None = None,
) -> BPETokenizer:
    """Load GPT-2's tokenizer from OpenAI's ``encoder.json`` and ``vocab.bpe``; gives GPT-2's ids exactly.

    ``encoder.json`` maps token strings (bytes written with :func:`bytes_to_unicode`) to ids;
    ``vocab.bpe`` lists the merges in order, one ``left right`` pair per line after a ``#version`` line.
    ``<|endoftext|>`` (id 50256) becomes the special token. With no paths, :func:`gpt2_files` finds them;
    a single folder path means ``folder/encoder.json`` and ``folder/vocab.bpe``.

    Example:
        >>> tok = load_gpt2()  # doctest: +SKIP
        >>> tok.encode("hello world"), tok.special_tokens  # doctest: +SKIP
        ([31373, 995], {'<|endoftext|>': 50256})

    Raises:
        ValueError: the files are inconsistent (a merge whose result is not in ``encoder.json``, ...).
    """
    if vocab_bpe_path is None and encoder_json_path is not None and Path(encoder_json_path).is_dir():
        folder = Path(encoder_json_path)
        encoder_json_path, vocab_bpe_path = folder / "encoder.json", folder / "vocab.bpe"
    if encoder_json_path is None or vocab_bpe_path is None:
        if encoder_json_path is not None or vocab_bpe_path is not None:
            raise ConfigError("pass both encoder_json_path and vocab_bpe_path, or neither")
        encoder_json_path, vocab_bpe_path = gpt2_files()
    with open(encoder_json_path, encoding="utf-8") as f:
        encoder: dict[str, int] = json.load(f)
    with open(vocab_bpe_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}

    special = {GPT2_ENDOFTEXT: encoder[GPT2_ENDOFTEXT]} if GPT2_ENDOFTEXT in encoder else {}
    ranks: dict[bytes, int] = {}
    for token, i in encoder.items():
        if token in special:
            continue
        try:
            ranks[bytes(byte_of[ch] for ch in token)] = i
        except KeyError:
            raise FileFormatError(
                f"{encoder_json_path}: token {token!r} uses a character outside GPT-2's byte map"
            ) from None

    merges = []
    start = 1 if lines and lines[0].startswith("#version") else 0
    for lineno, line in enumerate(lines[start:], start=start + 1):
        if not line:
            continue
        left, sep, right = line.partition(" ")
        if not sep or " " in right:
            raise FileFormatError(f"{vocab_bpe_path}:{lineno}: expected 'left right', got {line!r}")
        try:
            merges.append((encoder[left], encoder[right], encoder[left + right]))
        except KeyError as e:
            raise FileFormatError(f"{vocab_bpe_path}:{lineno}: token {e.args[0]!r} is not in {encoder_json_path}") from None
    return BPETokenizer.from_ranks(ranks, pattern=GPT2_PATTERN, special_tokens=special, merges=merges)


def load_tiktoken_ranks(path: str | os.PathLike[str]) -> dict[bytes, int]:
    """Read a tiktoken ``.tiktoken`` rank file: one ``<base64 token> <rank>`` per line.

    Example:
        a file with the lines ``IQ== 0`` and ``Ig== 1`` gives ``{b"!": 0, b'"': 1}``.
    """
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError:
                raise FileFormatError(f"{path}:{lineno}: expected '<base64> <rank>', got {line[:60]!r}") from None
    return ranks


def save_tiktoken_ranks(ranks: Mapping[bytes, int], path: str | os.PathLike[str]) -> Path:
    """Write ``{token bytes: rank}`` as a ``.tiktoken`` file (atomically), in rank order."""
    lines = [f"{base64.b64encode(b).decode('ascii')} {r}\n" for b, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    return atomic_write_text(path, "".join(lines))
