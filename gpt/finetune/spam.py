"""The SMS Spam Collection, split as the book's chapter 6 does, and padded batches of it.

    texts = read_spam_tsv(resolve_spam_data())          # 5,574 (label, text) rows, 747 spam
    splits = book_split(texts, seed=123)                # balanced 747 + 747, then 70 / 10 / 20 %
    batches = encode_split(splits["train"], tok, max_len=256)

The file is UCI's ``SMSSpamCollection``: one message per line, ``label<TAB>text``, labels ``ham`` or
``spam``. It is read line by line with no quote processing (the collection's own format: some texts
start with a ``"``, which a CSV reader would treat as a quoted field spanning lines).

The split, as ``create_balanced_dataset`` + ``random_split`` of rasbt/LLMs-from-scratch
``ch06/01_main-chapter-code/gpt_class_finetune.py``:

1. undersample ham: a seeded random ``n_spam`` of the ham rows, then all spam rows (747 + 747);
2. shuffle the 1,494 rows (same seed);
3. train = the first ``int(0.7 n)``, validation = the next ``int(0.1 n)``, test = the rest
   (1,045 / 149 / 300); labels ham 0, spam 1.

The book draws with pandas ``sample(random_state=123)``, i.e. ``np.random.RandomState(123).permutation``
(a prefix of it for the ham subset); so do we, without pandas.
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinytensor.errors import ConfigError, FileFormatError
from tokenizer.gpt2 import sha256_file

from tinytensor.fileio import atomic_write_bytes, cache_dir

from ..data import encode

FILENAME = "SMSSpamCollection.tsv"
SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
# the book's source: UCI's zip, which holds the file as "SMSSpamCollection" (no extension)
URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
MEMBER = "SMSSpamCollection"
LABELS = ("ham", "spam")                       # index = class id: ham 0, spam 1
BOOK_SEED = 123


@dataclass(frozen=True)
class Example:
    """One message: its text, class id (ham 0, spam 1) and line number in the file (1-based)."""
    text: str
    label: int
    line: int = 0


# ------------------------------------------------------------------------------------------- the file
def resolve_spam_data(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The TSV's path: ``path`` if given, else ``$TINYGPT_DATA/SMSSpamCollection.tsv``, else the cache,
    else UCI's zip downloaded and unpacked into the cache (the unpacked file's sha256 is checked).

    Raises:
        FileFormatError: ``path`` is not a file, a copy found by name has the wrong sha256, or it is not
            on this machine and cannot be downloaded (the message says how to pass ``--data``).
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir() and (p / FILENAME).is_file():
            p = p / FILENAME
        if not p.is_file():
            raise FileFormatError(f"no SMS spam file at {str(p)!r}: pass --data PATH to {FILENAME} "
                                  f"(label<TAB>text lines), or omit --data to use $TINYGPT_DATA or the download")
        return p
    env = os.environ.get("TINYGPT_DATA")
    candidates = ([Path(env) / FILENAME] if env else []) + [cache_dir() / FILENAME]
    for p in candidates:
        if p.is_file():
            digest = sha256_file(p)
            if digest != SHA256:
                raise FileFormatError(f"{p} has sha256 {digest}, expected {SHA256} for the SMS Spam "
                                      f"Collection; delete it or pass --data PATH to the file you mean")
            return p
    if not download:
        raise FileFormatError(f"{FILENAME} is not in {', '.join(map(str, candidates))}; pass --data PATH")
    return _download(candidates)


def _download(looked_in: list[Path]) -> Path:
    import urllib.request
    try:
        with urllib.request.urlopen(URL, timeout=30) as response:
            blob = response.read()
        data = zipfile.ZipFile(io.BytesIO(blob)).read(MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as e:
        raise FileFormatError(
            f"the SMS Spam Collection is not on this machine (looked in {', '.join(map(str, looked_in))}) and "
            f"downloading {URL} failed ({e}). Download that zip elsewhere, unpack {MEMBER}, and pass "
            f"--data PATH to it (or set TINYGPT_DATA to a folder holding it as {FILENAME}).") from None
    import hashlib
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise FileFormatError(f"{URL}: the unpacked {MEMBER} has sha256 {digest}, expected {SHA256}")
    return atomic_write_bytes(cache_dir() / FILENAME, data)


def read_spam_tsv(path: str | os.PathLike) -> list[Example]:
    """Every ``label<TAB>text`` line of the file as an :class:`Example` (blank lines are skipped).

    Raises:
        FileFormatError: naming the file and line: not UTF-8, a line without a tab, a label other than
            ham/spam, an empty text, or no rows at all.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{path} is not UTF-8 text ({e})") from None
    rows = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise FileFormatError(f"{path}:{n}: no tab in {_clip(line)!r}; each line must be label<TAB>text")
        label = label.strip()
        if label not in LABELS:
            raise FileFormatError(f"{path}:{n}: unknown label {label!r} (expected one of {', '.join(LABELS)})")
        if not text.strip():
            raise FileFormatError(f"{path}:{n}: the {label} row has an empty text")
        rows.append(Example(text, LABELS.index(label), n))
    if not rows:
        raise FileFormatError(f"{path} holds no label<TAB>text rows (the file is empty)")
    return rows


def _clip(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[:n - 3] + "..."


# ------------------------------------------------------------------------------------------ the split
def balance(rows: list[Example], seed: int = BOOK_SEED) -> list[Example]:
    """A seeded random ``n_spam`` of the ham rows, then every spam row (the book's undersampling).

    Raises:
        ConfigError: a class is missing, or there are fewer ham than spam rows.
    """
    ham = [r for r in rows if r.label == 0]
    spam = [r for r in rows if r.label == 1]
    if not spam or len(ham) < len(spam):
        raise ConfigError(f"balancing needs some spam and at least as many ham rows; got {len(ham)} ham, "
                          f"{len(spam)} spam")
    # pandas' sample(n, random_state=seed) without replacement = RandomState(seed).permutation(N)[:n]
    pick = np.random.RandomState(seed).permutation(len(ham))[:len(spam)]
    return [ham[i] for i in pick] + spam


def split(rows: list[Example], train_frac: float = 0.7, val_frac: float = 0.1,
          seed: int = BOOK_SEED) -> dict[str, list[Example]]:
    """Shuffle (seeded) and cut into ``{"train", "val", "test"}``: ``int(train_frac n)``, ``int(val_frac n)``
    and the rest, as the book's ``random_split``."""
    if not (0 < train_frac and 0 <= val_frac and train_frac + val_frac < 1):
        raise ConfigError(f"split fractions need 0 < train, 0 <= val, train + val < 1; got {train_frac}, {val_frac}")
    order = np.random.RandomState(seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    n_train = int(len(rows) * train_frac)
    n_val = int(len(rows) * val_frac)
    return {"train": rows[:n_train], "val": rows[n_train:n_train + n_val], "test": rows[n_train + n_val:]}


def book_split(rows: list[Example], seed: int = BOOK_SEED) -> dict[str, list[Example]]:
    """:func:`balance` then :func:`split` 70 / 10 / 20 % (chapter 6's datasets)."""
    return split(balance(rows, seed), 0.7, 0.1, seed)


def resolve_splits(splits: dict | None, rows: list[Example] | None, data, seed: int = BOOK_SEED) -> dict:
    """What a fine-tuning run trains and scores on: ``splits`` when given (``{"train", "val"[, "test"]}``, a
    cross-validation fold from :func:`kfold`), else the book's split of ``rows`` (read from ``data``, a path
    or None for the default file, when ``rows`` is None).

    Raises:
        ConfigError: ``splits`` lacks train or val, or has another key.
    """
    if splits is None:
        rows = read_spam_tsv(resolve_spam_data(data)) if rows is None else rows
        return book_split(rows, seed)
    if not {"train", "val"} <= set(splits) <= {"train", "val", "test"}:
        raise ConfigError(f"splits needs train and val (and optionally test), got {sorted(splits)}")
    return splits


def unlabelled_texts(rows: list[Example], held_out: list[Example], seed: int = BOOK_SEED) -> list[str]:
    """The texts of the rows that :func:`balance` leaves out (4,080 ham messages of the 5,574), in file
    order, for pretraining on unlabelled in-domain text; any text equal to a ``held_out`` row's text (compared
    lower-cased, whitespace collapsed: the collection repeats some messages) is dropped, so that no
    validation or test text reaches the model this way.

    The rows are told apart by identity, not value: pass the same ``rows`` that were balanced."""
    kept = {id(r) for r in balance(rows, seed)}
    held = {_normal(r.text) for r in held_out}
    return [r.text for r in rows if id(r) not in kept and _normal(r.text) not in held]


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def kfold(rows: list[Example], k: int, seed: int = 0) -> list[dict[str, list[Example]]]:
    """``k`` folds of ``rows`` for cross-validation: ``[{"train", "val"}, ...]``, the val parts disjoint and
    together every row once (fold f's val = the rows at positions f, f + k, ... of a seeded permutation;
    sizes differ by at most one), each fold's train = the other rows, in ``rows``' order.

    Raises:
        ConfigError: ``k`` is not an int in ``[2, len(rows)]``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= len(rows):
        raise ConfigError(f"kfold needs an int k in [2, {len(rows)}] (the row count), got {k!r}")
    order = np.random.RandomState(seed).permutation(len(rows))
    folds = []
    for f in range(k):
        held = set(order[f::k].tolist())
        folds.append({"train": [r for i, r in enumerate(rows) if i not in held],
                      "val": [rows[i] for i in order[f::k]]})
    return folds


# ------------------------------------------------------------------------------------------- batches
@dataclass
class Encoded:
    """A split's token ids (unpadded), labels, and how many texts were cut to ``max_len``."""
    ids: list[np.ndarray]
    labels: np.ndarray
    max_len: int
    truncated: int

    def __len__(self) -> int:
        return len(self.ids)


def encode_texts(texts: list[str], tok, max_len: int, end_id: int | None = None) -> tuple[list[np.ndarray], int]:
    """Each text's ids (no special-token handling), cut to its first ``max_len``; and how many were cut.

    With ``end_id``, that id is appended to every text (after cutting it to ``max_len - 1``), so each
    text's last real token is the same token, whose hidden state has read the whole text.

    Raises:
        ConfigError: ``max_len < 1`` (``< 2`` with ``end_id``), or a text that encodes to no tokens.
    """
    room = max_len - (end_id is not None)
    if room < 1:
        raise ConfigError(f"max_len must be >= {1 + (end_id is not None)}, got {max_len}")
    out, cut = [], 0
    for k, text in enumerate(texts):
        ids = encode(tok, text)
        if not ids:
            raise ConfigError(f"text {k} ({_clip(text)!r}) encodes to no tokens")
        if len(ids) > room:
            ids, cut = ids[:room], cut + 1
        out.append(np.asarray(ids + ([int(end_id)] if end_id is not None else []), dtype=np.int64))
    return out, cut


def encode_split(rows: list[Example], tok, max_len: int, end_id: int | None = None) -> Encoded:
    """:func:`encode_texts` of the rows' texts, with their labels."""
    ids, cut = encode_texts([r.text for r in rows], tok, max_len, end_id)
    return Encoded(ids, np.array([r.label for r in rows], dtype=np.int64), max_len, cut)


def pad_batch(seqs: list[np.ndarray], pad_id: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``seqs`` to the longest one (or to ``length``) with ``pad_id``.

    Returns ``(idx [B, T] int64, lengths [B])``. Example: ``[[5, 6, 7], [8]]`` with pad 0 gives
    ``[[5, 6, 7], [8, 0, 0]]`` and lengths ``[3, 1]``: the last real token of row b is at ``lengths[b] - 1``.
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    T = int(lengths.max()) if length is None else int(length)
    if T < lengths.max():
        raise ConfigError(f"pad_batch: length {T} is shorter than the longest sequence ({lengths.max()})")
    idx = np.full((len(seqs), T), pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        idx[b, :len(s)] = s
    return idx, lengths


def iter_batches(data: Encoded, batch_size: int, pad_id: int, rng: np.random.Generator | None = None,
                 drop_last: bool = False, fixed_length: bool = False):
    """Yield ``(idx [B, T], lengths [B], labels [B])``, shuffled when ``rng`` is given.

    Each batch is padded to its own longest text, or to ``data.max_len`` with ``fixed_length``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(len(data)) if rng is not None else np.arange(len(data))
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        pick = order[start:start + batch_size]
        idx, lengths = pad_batch([data.ids[i] for i in pick], pad_id, data.max_len if fixed_length else None)
        yield idx, lengths, data.labels[pick]
