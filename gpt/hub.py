"""GPT-2 by name: ``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl`` from the Hugging Face hub.

    path = resolve_model("gpt2")        # a folder with config.json, model.safetensors, vocab.json, merges.txt
    model = GPT.from_pretrained(path)

A name that is not an existing folder is looked up in :data:`MODELS`; its files are downloaded once into the
cache (``tinytensor.fileio.cache_dir("hub", name)``: ``$XDG_CACHE_HOME/tinygpt/hub/<name>``, else
``~/.cache/tinygpt/hub/<name>``) from the hub's public file
addresses, ``{endpoint}/{repo}/resolve/main/{file}``, as ``huggingface_hub`` does:

* the endpoint is ``$HF_ENDPOINT`` when set, else ``https://huggingface.co``;
* ``HF_HUB_OFFLINE=1`` means no network: a name whose files are not cached fails with one line that says
  where to put a folder instead;
* every file is checked against the hash the hub publishes for it: a HEAD request returns
  ``X-Linked-Etag`` (the sha256 of a large, LFS-stored file such as ``model.safetensors``) or ``ETag`` (the
  git blob id, sha1 of ``b"blob <size>\\0" + content``, of a small file such as ``config.json``);
* a download goes to ``<file>.incomplete`` and resumes from its size with an HTTP ``Range`` request; only
  a verified file is renamed into place (fsync, then ``os.replace``), so a folder never holds a partial
  or unverified file under its real name. A progress bar (tqdm) shows on stderr.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from tinytensor.errors import UsageError
from tinytensor.fileio import cache_dir, fsync_dir

DEFAULT_ENDPOINT = "https://huggingface.co"

# name -> hub repository (the OpenAI checkpoints, as transformers' GPT2LMHeadModel stores them)
MODELS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
# what a self-contained folder holds: the model, and GPT-2's tokenizer in transformers' file names
FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")


class HubError(UsageError):
    """A model could not be had by name (offline, unknown name, a download that failed or did not verify)."""


def endpoint() -> str:
    """The hub's address: ``$HF_ENDPOINT`` or the public hub."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def file_url(repo: str, filename: str) -> str:
    """``{endpoint}/{repo}/resolve/main/{filename}``."""
    return f"{endpoint()}/{repo}/resolve/main/{urllib.parse.quote(filename)}"


def git_blob_sha1(data: bytes) -> str:
    """Git's id of a file's content: sha1 of ``b"blob <len>\\0" + data`` (the hub's ETag of small files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ------------------------------------------------------------------------------------------- HTTP
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None   # the HEAD request reads the hub's headers on the redirect itself


def _head(url: str, timeout: float) -> dict[str, str]:
    """Headers of ``url``, following relative (same-hub) redirects only, as huggingface_hub does."""
    opener = urllib.request.build_opener(_NoRedirect)
    for _ in range(5):
        req = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity"})
        try:
            with opener.open(req, timeout=timeout) as r:
                return {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            if e.code in (301, 302, 303, 307, 308):
                headers = {k.lower(): v for k, v in e.headers.items()}
                location = headers.get("location", "")
                if location.startswith("/"):                     # a renamed repo: same hub, follow it
                    url = urllib.parse.urljoin(url, location)
                    continue
                return headers                                   # a CDN redirect: the hub's headers are here
            raise
    raise HubError(f"too many redirects for {url}")


def _expected_hash(headers: dict[str, str]) -> tuple[str, str]:
    """``("sha256", hex)`` for an LFS file, ``("git-sha1", hex)`` for a small one."""
    linked = headers.get("x-linked-etag")
    if linked:
        return "sha256", linked.strip().removeprefix("W/").strip('"')
    etag = headers.get("etag")
    if etag:
        return "git-sha1", etag.strip().removeprefix("W/").strip('"')
    raise HubError("the hub sent no ETag to verify the file against")


def _verify(path: Path, kind: str, expected: str) -> bool:
    if kind == "sha256":
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == expected
    return git_blob_sha1(path.read_bytes()) == expected


def download(repo: str, filename: str, folder: Path, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch one file of ``repo`` into ``folder`` (resumable, verified, renamed into place); returns its path."""
    dest = folder / filename
    if dest.is_file():
        return dest
    url = file_url(repo, filename)
    kind, expected = _expected_hash(_head(url, timeout))
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{filename}.incomplete"
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416:                        # 416: the part is already whole
            raise
        response = None
    if response is not None:
        with response:
            if have and response.status != 206:  # the server ignored Range: start again
                have = 0
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=filename, file=sys.stderr,
                    disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
    if not _verify(part, kind, expected):
        part.unlink()
        raise HubError(f"{url}: the downloaded file does not match the hub's {kind} {expected}; "
                       f"it was deleted, try again")
    os.replace(part, dest)
    fsync_dir(folder)
    return dest


def _remove_if_empty(folder: Path) -> None:
    """Leave no empty folder behind a failed first download (a partial ``.incomplete`` file is kept)."""
    for d in (folder, folder.parent):
        try:
            d.rmdir()               # only succeeds when empty
        except OSError:
            return


def resolve_model(name_or_path: str | os.PathLike, *, progress: bool = True) -> Path:
    """A local folder for ``name_or_path``: the folder itself, or a GPT-2 model by name (downloaded once).

    Raises:
        FileNotFoundError: neither a folder nor a model name.
        HubError: offline without the files in the cache, or a failed download.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name not in MODELS:
        raise FileNotFoundError(f"no folder {name!r}, and it is not a model name ({', '.join(MODELS)})")
    folder = cache_dir("hub", name)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if not missing:
        return folder
    if offline():
        raise HubError(f"{name}: HF_HUB_OFFLINE is set and {', '.join(missing)} are not in {folder}; put a "
                       f"folder with {', '.join(FILES)} there, or pass the folder's path instead of the name")
    repo = MODELS[name]
    try:
        for f in missing:
            download(repo, f, folder, progress=progress)
    except HubError:
        _remove_if_empty(folder)
        raise
    except (urllib.error.URLError, OSError) as e:
        _remove_if_empty(folder)
        reason = getattr(e, "reason", None) or e
        raise HubError(f"{name}: cannot download from {endpoint()}/{repo} ({reason}); offline, put a folder "
                       f"with {', '.join(FILES)} at {folder} or pass a folder's path") from None
    return folder


__all__ = ["MODELS", "FILES", "HubError", "resolve_model", "download", "endpoint", "offline", "file_url",
           "git_blob_sha1"]
