"""Files, the one way: atomic writes, atomic ``.npy`` saves, UTF-8 reads, SHA-256 of a file, the cache
folder, and checksummed downloads. Used by ``gpt``, ``tokenizer`` and ``benchmarks``; it imports nothing else of
tinytensor but its error types.

Atomic write: the bytes go to a temporary file in the destination's folder, which is flushed and fsynced,
given its permission bits, then ``os.replace``d over the destination; finally the folder is fsynced so the
rename itself survives a crash. A reader sees the old file or the new one, never half of one. A write
that the system refuses (disk full, read-only, a file where a folder should be) raises
:class:`~tinytensor.errors.OutputError`, one line naming the path and the reason; what a kill leaves
behind (the temporary files) is removed by :func:`remove_stale_temps`.

Permissions, one rule for every file written here: a file that replaces an existing one keeps that file's
permission bits; a new file gets what a plain ``open`` would give, ``0o666`` minus the umask
(``tempfile.mkstemp`` alone would make it ``0o600``, private to its owner). Folders made with
``tempfile.mkdtemp`` get ``0o777`` minus the umask by :func:`default_mode`.

The cache folder (downloads: datasets, GPT-2's tokenizer files) is ``$XDG_CACHE_HOME/tinygpt`` if
``XDG_CACHE_HOME`` is set, else ``~/.cache/tinygpt``.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from .errors import FileFormatError, OutputError

__all__ = ["atomic_open", "atomic_save_npy", "atomic_write_bytes", "atomic_write_text", "cache_dir",
           "default_mode", "download_file", "fsync_dir", "output_error", "read_text", "remove_stale_temps",
           "sha256_file", "writing", "write_synced"]

CACHE_NAME = "tinygpt"


def _read_umask() -> int:
    # subtle: the only way to read the umask is to set it; done once, at import, before any thread starts
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def default_mode(directory: bool = False) -> int:
    """The permission bits a plain ``open`` (``0o666``) or ``mkdir`` (``0o777``) gives under the umask."""
    return (0o777 if directory else 0o666) & ~_UMASK


def _mode_for(path: Path) -> int:
    """The bits for a file written over ``path``: the old file's, else :func:`default_mode`."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default_mode()


# errors that mean "this destination cannot be written", not a bug: reported as one line (OutputError)
_OUTPUT_ERRNOS = frozenset(getattr(errno, name) for name in
                           ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EISDIR",
                            "EFBIG", "EIO", "ENAMETOOLONG", "ELOOP", "EMFILE", "ENFILE") if hasattr(errno, name))


def output_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """An :class:`OutputError` naming ``path`` and what the OS said (``No space left on device [ENOSPC]``)."""
    code = errno.errorcode.get(e.errno, str(e.errno))
    if e.errno in (errno.EEXIST, errno.ENOTDIR):       # a file where a folder of the path should be
        blocker = next((p for p in Path(path).parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return OutputError(f"cannot write {path}: {blocker} is a file, not a folder [{code}]")
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    return OutputError(f"cannot write {path}{where}: {os.strerror(e.errno)} [{code}]")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError of a write to ``path`` (disk full, read-only, a file in the way) into an OutputError.

    Only the errnos of :data:`_OUTPUT_ERRNOS`: a network error inside the block (a download's) stays itself.
    """
    try:
        yield
    except OSError as e:
        if e.errno in _OUTPUT_ERRNOS:
            raise output_error(path, e) from e
        raise


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` and fsync it (a file of a folder that is renamed into place)."""
    with writing(path), open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")      # atomic_open's mkstemp(prefix=".NAME.", suffix=".tmp")
_TEMP_DIR = re.compile(r"\..+\.tmp-[a-z0-9_]{8}")       # mkdtemp(prefix=".NAME.tmp-"), a checkpoint being built


def remove_stale_temps(folder: str | os.PathLike, older_than: float | None = None) -> list[Path]:
    """Delete the temporary files and folders this module's writers leave when killed mid-write.

    They are the ``.NAME.XXXXXXXX.tmp`` files of :func:`atomic_open` and the ``.NAME.tmp-XXXXXXXX`` folders of
    a checkpoint being built (``XXXXXXXX``: :mod:`tempfile`'s 8 random characters); only those last modified
    before ``older_than`` (default: now) go, so a write that is still under way is left alone. Returns what
    was removed.
    """
    older_than = time.time() if older_than is None else older_than
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for p in entries:
        ours = _TEMP_FILE.fullmatch(p.name) or _TEMP_DIR.fullmatch(p.name)
        try:
            if not ours or p.is_symlink() or p.stat().st_mtime >= older_than:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue          # gone already, or not ours to delete: leave it
        removed.append(p)
    return removed


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` to ``path`` as one JSON line and fsync it (logs such as ``log.jsonl``).

    The line goes out in one ``write`` to an ``O_APPEND`` descriptor, so a crash leaves the whole line or at
    worst a torn last line, which a reader can recognise and skip (``gpt.train.read_log`` does).
    """
    line = (json.dumps(record) + "\n").encode("utf-8")
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so renames into it are durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` is replaced only if the block ends normally.

    The file object writes to a temporary file in ``path``'s folder (created if missing). On a normal exit
    it is flushed, fsynced, given the module's permission rule and ``os.replace``d over ``path``; on an
    exception it is deleted and ``path`` is left as it was.

    Args:
        path: the destination.
        mode: ``"wb"`` or ``"w"`` (text: ``encoding`` defaults to UTF-8, newlines are written as ``\\n``).
        encoding: for text mode.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a whole file: mode 'wb' or 'w', got {mode!r}")
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))
        text = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": "\n"}
        with writing(path):
            with os.fdopen(fd, mode, **text) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 (``\\n`` newlines) to ``path`` atomically; returns the path."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_save_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """``np.save`` atomically, without pickling (plain numeric arrays only); returns the path."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def read_text(path: str | os.PathLike) -> str:
    """The file's text as UTF-8.

    Raises:
        FileFormatError: the bytes are not UTF-8.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{path} is not UTF-8 text ({e})") from None


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``.

    Raises:
        FileNotFoundError: no such file (callers say how to make one).
        FileFormatError: the bytes are not UTF-8 JSON, or hold something other than an object.
    """
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FileFormatError(f"{path} is not valid JSON ({type(e).__name__}: {e}); the file is damaged "
                              f"or truncated") from None
    if not isinstance(doc, dict):
        raise FileFormatError(f"{path} must hold a JSON object, got {type(doc).__name__}")
    return doc


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir(*parts: str) -> Path:
    """The download cache ``$XDG_CACHE_HOME/tinygpt`` (else ``~/.cache/tinygpt``), joined with ``parts``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, CACHE_NAME, *parts)


def download_file(url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its SHA-256; returns ``dest``.

    The bytes are checked before the temporary file replaces ``dest``: a reader sees no file or the whole
    verified file, never a partial or wrong one. If ``dest`` already has the right checksum nothing is
    downloaded.

    A failed download leaves no trace: the folders this call made for ``dest`` are removed again if they
    are empty (an offline first run must not leave an empty cache folder behind).

    Raises:
        FileFormatError: the downloaded bytes do not have the expected SHA-256 (``dest`` is untouched).
        OSError: the download failed (``urllib.error.URLError`` is an OSError).
    """
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]   # deepest first
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(dest, "wb") as f:
            for block in iter(lambda: response.read(1 << 16), b""):
                h.update(block)
                f.write(block)
            if h.hexdigest() != sha256:
                raise FileFormatError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}")
    except BaseException:
        for d in made:
            try:
                d.rmdir()           # only an empty folder goes
            except OSError:
                break
        raise
    return dest
