"""Text in, batches out: find the text, tokenize it once, split it, and draw seeded batches.

* :func:`resolve_text` finds a dataset by name (``tinyshakespeare``: ``$TINYGPT_DATA``, then the cache
  ``~/.cache/tinygpt``, then a checksum-verified download) or takes any text file path.
* :func:`build_tokenizer` makes the tokenizer named by ``char``, ``gpt2`` or a saved tokenizer's path.
* :func:`prepare_tokens` encodes the text once into ``uint16`` ``.npy`` files (train = first 90 %,
  val = last 10 %, nanoGPT's split) under ``out_dir/data`` and reuses them while the text and the
  tokenizer are unchanged.
* :class:`BatchSampler` draws ``(x, y)`` batches from one ``np.random.Generator`` whose state can be
  saved and restored, so a resumed run draws exactly the batches a straight run would have.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizer.gpt2 import sha256_file

VAL_FRACTION = 0.1


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


# ------------------------------------------------------------------------------------ atomic files
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def default_mode(directory: bool = False) -> int:
    """The permissions a plain ``open``/``mkdir`` would give (``mkstemp``/``mkdtemp`` use 0600/0700)."""
    return (0o777 if directory else 0o666) & ~_UMASK


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    A temporary file in the same folder is written and fsynced, then ``os.replace``d over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_save_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """``np.save`` through a temporary file (no pickling: plain numeric arrays only)."""
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------ finding text
def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/tinygpt`` or ``~/.cache/tinygpt``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinygpt"


def resolve_text(dataset: str) -> Path:
    """The path of the text file for ``dataset``: a dataset name (see ``DATASETS``) or a file path.

    A name is looked up in ``$TINYGPT_DATA``, then in :func:`cache_dir`, then downloaded from its
    canonical URL into the cache (sha256 checked, written atomically). A folder is searched for the
    known datasets' file names.

    Raises:
        FileNotFoundError: no such file, or the dataset is not on this machine and cannot be downloaded
            (the message says how to pass ``--data``).
        ValueError: a local copy of a named dataset whose sha256 is wrong.
    """
    if dataset in DATASETS:
        return _named_text(DATASETS[dataset], dataset)
    path = Path(dataset).expanduser()
    if path.is_dir():
        for remote in DATASETS.values():
            if (path / remote.filename).is_file():
                return path / remote.filename
        raise FileNotFoundError(f"{path} is a folder without any of {[r.filename for r in DATASETS.values()]}; "
                                f"pass --data PATH to a text file")
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {str(path)!r}; pass --data PATH to a UTF-8 text file, "
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
                raise ValueError(f"{p} has sha256 {digest}, expected {remote.sha256} for {name}; "
                                 f"delete it or pass --data PATH to the file you mean")
            return p
    from tokenizer import download_file  # atomic, sha256-checked download
    try:
        return download_file(remote.url, cache_dir() / remote.filename, remote.sha256, timeout=30)
    except OSError as e:
        raise FileNotFoundError(
            f"{name} is not on this machine (looked in {', '.join(str(c) for c in candidates)}) and "
            f"downloading {remote.url} failed ({e}). Pass --data PATH to a local copy of the text, or set "
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


def read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None


# ------------------------------------------------------------------------------------- tokenizers
def build_tokenizer(spec: str, text: str | None = None):
    """The tokenizer named by ``spec``: ``char`` (built from ``text``), ``gpt2``, or a saved tokenizer's path."""
    if spec == "char":
        from tokenizer import CharTokenizer
        if text is None:
            raise ValueError("the char tokenizer is built from the training text; none given")
        return CharTokenizer.from_text(text)
    if spec == "gpt2":
        return _load_gpt2()
    path = Path(spec).expanduser()
    if path.is_file():
        return load_tokenizer(path)
    raise ValueError(f"--tokenizer must be char, gpt2 or the path of a saved tokenizer; got {spec!r}")


def _load_gpt2():
    from tokenizer import load_gpt2  # finds encoder.json / vocab.bpe ($TINYGPT_DATA/gpt2, cache, download)
    return load_gpt2()


def load_tokenizer(path: str | os.PathLike):
    """Read a tokenizer saved with ``tokenizer.save(path)``."""
    from tokenizer import load
    return load(path)


def tokenizer_bytes(tok) -> bytes:
    """The tokenizer's saved JSON file as bytes (its identity for caches and checkpoints)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "tokenizer.json"
        tok.save(p)
        return p.read_bytes()


def encode(tok, text: str) -> list[int]:
    """Encode text with no special-token handling (special-token strings in the data are plain text)."""
    f = getattr(tok, "encode_ordinary", None)
    return f(text) if f is not None else tok.encode(text)


# ---------------------------------------------------------------------------------- token files
def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def prepare_tokens(text_path: str | os.PathLike, tok, data_dir: str | os.PathLike
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encode ``text_path`` with ``tok`` into ``data_dir/{train,val}.npy`` (reused when unchanged).

    Returns ``(train_ids, val_ids, meta)``: read-only memory-mapped ``uint16`` arrays (``uint32`` for a
    vocabulary above 65,536) and the ``meta.json`` dict (source, its sha256, token counts).
    """
    data_dir = Path(data_dir)
    text_sha = sha256_file(text_path)
    tok_sha = hashlib.sha256(tokenizer_bytes(tok)).hexdigest()
    meta_path = data_dir / "meta.json"
    want = {"text_sha256": text_sha, "tokenizer_sha256": tok_sha, "vocab_size": tok.vocab_size}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()) and all(
                (data_dir / f"{s}.npy").is_file() for s in ("train", "val")):
            return (np.load(data_dir / "train.npy", mmap_mode="r", allow_pickle=False),
                    np.load(data_dir / "val.npy", mmap_mode="r", allow_pickle=False), meta)
    ids = np.array(encode(tok, read_text(text_path)), dtype=_id_dtype(tok.vocab_size))
    n_train = int(len(ids) * (1 - VAL_FRACTION))
    train, val = ids[:n_train], ids[n_train:]
    atomic_save_npy(data_dir / "train.npy", train)
    atomic_save_npy(data_dir / "val.npy", val)
    meta = {"source": str(text_path), **want, "dtype": str(ids.dtype),
            "n_train": int(train.size), "n_val": int(val.size)}
    atomic_write_bytes(meta_path, (json.dumps(meta, indent=1) + "\n").encode())
    return train, val, meta


# ------------------------------------------------------------------------------------------- batches
class BatchSampler:
    """Random ``block_size`` windows of a token array, ``batch_size`` at a time.

    ``x[b] = data[i_b : i_b + T]`` and ``y[b] = data[i_b + 1 : i_b + 1 + T]`` (the next tokens) with
    starts ``i_b`` uniform in ``[0, len(data) - T)``, drawn from this sampler's own generator.
    """

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator,
                 name: str = "data"):
        if len(data) <= block_size:
            raise ValueError(f"the {name} split has {len(data)} tokens; it needs more than "
                             f"block_size={block_size} (use a longer text or a smaller --block_size)")
        self.data, self.block_size, self.batch_size, self.rng = data, block_size, batch_size, rng

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        T = self.block_size
        ix = self.rng.integers(0, len(self.data) - T, size=self.batch_size)   # [B] window starts
        offsets = ix[:, None] + np.arange(T)                                    # [B, T]
        x = self.data[offsets].astype(np.int64)                                 # [B, T]
        y = self.data[offsets + 1].astype(np.int64)                             # [B, T]
        return x, y

    # JSON-able generator state for checkpoints
    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


# Stream ids under one seed: training batches, and one eval stream per split. Separate streams mean
# evaluating (or not) never changes the training batches.
STREAM_TRAIN, STREAM_EVAL_TRAIN, STREAM_EVAL_VAL = 1, 2, 3


def make_samplers(train: np.ndarray, val: np.ndarray, block_size: int, batch_size: int, seed: int
                  ) -> dict[str, BatchSampler]:
    """``{"train": ..., "eval_train": ..., "eval_val": ...}`` samplers, each on its own seeded stream."""
    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, stream])
    return {"train": BatchSampler(train, block_size, batch_size, rng(STREAM_TRAIN), "train"),
            "eval_train": BatchSampler(train, block_size, batch_size, rng(STREAM_EVAL_TRAIN), "train"),
            "eval_val": BatchSampler(val, block_size, batch_size, rng(STREAM_EVAL_VAL), "val")}
