"""Finding the training text: a dataset name or a file path.

A name (see :data:`DATASETS`) is looked up in ``$TINYGPT_DATA``, then in the download cache
(:func:`tinytensor.fileio.cache_dir`), then downloaded from its canonical URL (sha256 checked, written
atomically). Any other string is a text file's path, or a folder holding a known dataset's file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tinytensor.errors import FileFormatError
from tinytensor.fileio import cache_dir, download_file, sha256_file

__all__ = ["DATASETS", "RemoteText", "resolve_text", "training_text"]


@dataclass(frozen=True)
class RemoteText:
    filename: str
    url: str
    sha256: str


DATASETS: dict[str, RemoteText] = {
    "tinyshakespeare": RemoteText(
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    # the short story of Build a Large Language Model (From Scratch), ch. 2 and 5
    "the-verdict": RemoteText(
        "the-verdict.txt",
        "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"),
}


def resolve_text(dataset: str) -> Path:
    """The path of the text file for ``dataset``: a dataset name (see ``DATASETS``) or a file path.

    Raises:
        FileNotFoundError: no such file, or the dataset is not on this machine and cannot be downloaded.
        FileFormatError: a local copy of a named dataset whose sha256 is wrong.
    """
    if dataset in DATASETS:
        return _named_text(DATASETS[dataset], dataset)
    path = Path(dataset).expanduser()
    if path.is_dir():
        for remote in DATASETS.values():
            if (path / remote.filename).is_file():
                return path / remote.filename
        raise FileNotFoundError(f"{path} is a folder without any of {[r.filename for r in DATASETS.values()]}; "
                                f"give the path of a text file")
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {str(path)!r}; give the path of a UTF-8 text file, "
                                f"or a dataset name ({', '.join(DATASETS)})")
    return path


def _named_text(remote: RemoteText, name: str) -> Path:
    env = os.environ.get("TINYGPT_DATA")
    candidates = [Path(env) / remote.filename] if env else []
    candidates.append(cache_dir() / remote.filename)
    for p in candidates:
        if p.is_file():
            digest = sha256_file(p)
            if digest != remote.sha256:
                raise FileFormatError(f"{p} has sha256 {digest}, expected {remote.sha256} for {name}; "
                                      f"delete it or give the path of the file you mean")
            return p
    try:
        return download_file(remote.url, cache_dir() / remote.filename, remote.sha256, timeout=30)
    except OSError as e:
        raise FileNotFoundError(
            f"{name} is not on this machine (looked in {', '.join(str(c) for c in candidates)}) and "
            f"downloading {remote.url} failed ({e}). Give the path of a local copy of the text, or set "
            f"TINYGPT_DATA to a folder that holds {remote.filename}.") from None


def training_text(state: dict, data: str | None = None) -> Path:
    """The text a checkpoint was trained on: ``data`` if given, else the file recorded in the checkpoint
    (if it is still there, unchanged), else its dataset name resolved as usual."""
    if data is not None:
        return resolve_text(data)
    recorded = state.get("data", {})
    src = recorded.get("source")
    if src and Path(src).is_file() and sha256_file(src) == recorded.get("text_sha256"):
        return Path(src)
    return resolve_text(state["train_config"]["dataset"])
