"""The interface every tokenizer shares, and the helpers behind it.

A tokenizer maps text to a list of integer ids and back. Every tokenizer here has the same surface:

* ``encode(text, allowed_special=..., disallowed_special=...) -> list[int]`` with tiktoken's rules for
  special tokens (see :func:`resolve_special`),
* ``encode_ordinary(text)`` (no special-token handling at all), ``encode_batch(texts)``,
* ``decode(ids, errors="replace") -> str`` and ``decode_bytes(ids) -> bytes``,
* ``vocab_size``, ``special_tokens``, ``save(path)`` and ``load(path)``.

Saved files are JSON: ``{"format": "tinygpt-tokenizer", "version": 1, "type": <kind>, ...}``; :func:`load`
reads any of them and returns the right class.
"""
from __future__ import annotations

import json
import operator
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import regex

from tinytensor.errors import ConfigError, DTypeError, FileFormatError, UsageError
from tinytensor.fileio import atomic_write_text

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DisallowedSpecialError",
    "MAX_ID",
    "Tokenizer",
    "UnknownTokenError",
    "VocabTokenizer",
    "check_ids",
    "check_text",
    "load",
    "resolve_special",
    "special_token_regex",
    "split_on_special",
]

FORMAT_NAME = "tinygpt-tokenizer"
FORMAT_VERSION = 1

AllowedSpecial = Literal["all"] | Iterable[str]

MAX_ID = 2**31          # ids in a saved file must be below this (int32 range; the model sizes itself by them)


class DisallowedSpecialError(UsageError):
    """The text holds a special-token string that ``encode`` may not encode.

    ``token`` and ``index`` say which and where, so a caller (the command line) can word its own advice.
    """

    def __init__(self, message: str, token: str, index: int):
        super().__init__(message)
        self.token, self.index = token, index


class UnknownTokenError(UsageError):
    """A character (or word) that is not in the tokenizer's vocabulary, with no ``unk_token`` to map it to.

    ``token``, ``index`` (its position in the text) and ``vocab_size`` let a caller word its own advice.
    """

    def __init__(self, message: str, token: str, index: int, vocab_size: int):
        super().__init__(message)
        self.token, self.index, self.vocab_size = token, index, vocab_size


def check_text(text: object, what: str = "text") -> str:
    """Return ``text`` if it is a ``str``, else raise TypeError naming its type.

    Example:
        >>> check_text("hi")
        'hi'
        >>> check_text(b"hi")
        Traceback (most recent call last):
        ...
        tinytensor.errors.DTypeError: text must be str, got bytes (b'hi')
    """
    if not isinstance(text, str):
        shown = repr(text)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise DTypeError(f"{what} must be str, got {type(text).__name__} ({shown})")
    return text


def check_ids(ids: object) -> list[int]:
    """Return ``ids`` as a list of Python ints, or raise TypeError naming the bad value.

    Accepts any iterable of integers (lists, tuples, numpy arrays of an integer dtype); rejects strings,
    floats and bools-that-are-not-ints (``True`` is an int in Python and is accepted as 1).

    Example:
        >>> check_ids((1, 2, 3))
        [1, 2, 3]
        >>> check_ids([1, 2.0])
        Traceback (most recent call last):
        ...
        tinytensor.errors.DTypeError: token ids must be integers, got float (2.0) at position 1
    """
    if isinstance(ids, (str, bytes, bytearray)):
        raise DTypeError(f"token ids must be an iterable of int, got {type(ids).__name__}")
    dtype_kind = getattr(getattr(ids, "dtype", None), "kind", None)
    if dtype_kind in ("i", "u"):  # numpy arrays: one C call instead of a Python loop
        if ids.ndim != 1:  # type: ignore[attr-defined]
            raise DTypeError(f"token ids must be 1-D, got an array of shape {ids.shape}")  # type: ignore[attr-defined]
        return ids.tolist()  # type: ignore[attr-defined]
    try:
        items = list(ids)  # type: ignore[call-overload]
    except TypeError:
        raise DTypeError(f"token ids must be an iterable of int, got {type(ids).__name__}") from None
    try:
        return [operator.index(i) for i in items]
    except TypeError:
        for pos, i in enumerate(items):
            try:
                operator.index(i)
            except TypeError:
                raise DTypeError(
                    f"token ids must be integers, got {type(i).__name__} ({i!r}) at position {pos}"
                ) from None
        raise


def special_token_regex(tokens: Iterable[str]) -> regex.Pattern[str]:
    """Compile a regex that finds any of ``tokens`` literally, longest first.

    Longest first makes the choice between overlapping special tokens (``<|a|>`` and ``<|a|>b``)
    deterministic: the longer one wins.

    Example:
        >>> special_token_regex(["<|a|>", "<|a|>b"]).findall("x<|a|>b<|a|>")
        ['<|a|>b', '<|a|>']
    """
    ordered = sorted(set(tokens), key=lambda s: (-len(s), s))
    return regex.compile("|".join(regex.escape(t) for t in ordered))


def split_on_special(text: str, pattern: regex.Pattern[str] | None) -> list[tuple[str, bool]]:
    """Split ``text`` into ``(piece, is_special)`` runs around the matches of ``pattern``.

    Ordinary runs are never empty; special runs are the matched token strings.

    Example:
        >>> split_on_special("a<|x|>b<|x|>", special_token_regex(["<|x|>"]))
        [('a', False), ('<|x|>', True), ('b', False), ('<|x|>', True)]
    """
    if pattern is None:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    start = 0
    for m in pattern.finditer(text):
        if m.start() > start:
            out.append((text[start : m.start()], False))
        out.append((m.group(), True))
        start = m.end()
    if start < len(text):
        out.append((text[start:], False))
    return out


def _as_token_set(value: object, name: str) -> frozenset[str]:
    if isinstance(value, str):
        # subtle: a bare string would iterate as characters; tiktoken takes "all" or a set.
        raise DTypeError(f'{name} must be "all" or a collection of str, got the str {value!r}')
    try:
        tokens = frozenset(value)  # type: ignore[arg-type]
    except TypeError:
        raise DTypeError(f'{name} must be "all" or a collection of str, got {type(value).__name__}') from None
    for t in tokens:
        if not isinstance(t, str):
            raise DTypeError(f"{name} must hold str, got {type(t).__name__} ({t!r})")
    return tokens


def resolve_special(
    allowed_special: AllowedSpecial,
    disallowed_special: AllowedSpecial,
    special_tokens: Iterable[str],
) -> tuple[frozenset[str], frozenset[str]]:
    """Apply tiktoken's rules and return ``(allowed, disallowed)`` as sets of special-token strings.

    * ``allowed_special="all"`` allows every special token; a set allows those (an unknown name is a
      ValueError here, where tiktoken would ignore it).
    * ``disallowed_special="all"`` (the default) disallows every special token that is not allowed:
      text containing one raises ValueError. ``disallowed_special=()`` disallows none, so special-token
      strings that are not allowed are encoded as ordinary text.

    Example:
        >>> sorted(map(sorted, resolve_special(set(), "all", ["<|a|>", "<|b|>"])))
        [[], ['<|a|>', '<|b|>']]
        >>> sorted(map(sorted, resolve_special({"<|a|>"}, (), ["<|a|>", "<|b|>"])))
        [[], ['<|a|>']]
    """
    known = frozenset(special_tokens)
    if isinstance(allowed_special, str) and allowed_special == "all":
        allowed = known
    else:
        allowed = _as_token_set(allowed_special, "allowed_special")
        unknown = sorted(allowed - known)
        if unknown:
            raise UsageError(f"allowed_special names tokens that are not special tokens here: {unknown}")
    if isinstance(disallowed_special, str) and disallowed_special == "all":
        disallowed = known - allowed
    else:
        disallowed = _as_token_set(disallowed_special, "disallowed_special")
    return allowed, disallowed


class Tokenizer:
    """Base class: the special-token logic, batching, decoding to str, and JSON save/load.

    Subclasses set ``kind`` (the ``"type"`` in saved files) and implement ``_encode_ordinary``,
    ``decode_bytes``, ``vocab_size``, ``_to_dict`` and ``_from_dict``.
    """

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Tokenizer._registry[cls.kind] = cls

    def __init__(self) -> None:
        self._special: dict[str, int] = {}
        self._special_regex_cache: dict[frozenset[str], regex.Pattern[str]] = {}

    # -- what subclasses provide -------------------------------------------------------------------------
    def _encode_ordinary(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Return the bytes that ``ids`` stand for (special tokens as their UTF-8 strings)."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Number of ids: one more than the largest id, special tokens included."""
        raise NotImplementedError

    def _to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------------------------
    @property
    def special_tokens(self) -> dict[str, int]:
        """A copy of the special tokens, ``{string: id}``."""
        return dict(self._special)

    def _special_regex(self, tokens: frozenset[str]) -> regex.Pattern[str]:
        pat = self._special_regex_cache.get(tokens)
        if pat is None:
            pat = self._special_regex_cache[tokens] = special_token_regex(tokens)
        return pat

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` ignoring special tokens entirely (their strings are plain text)."""
        return self._encode_ordinary(check_text(text))

    def encode(
        self,
        text: str,
        *,
        allowed_special: AllowedSpecial = frozenset(),
        disallowed_special: AllowedSpecial = "all",
    ) -> list[int]:
        """Encode ``text`` to ids, treating special tokens as tiktoken does.

        Args:
            text: the string to encode.
            allowed_special: ``"all"`` or a set of special-token strings to emit as their ids.
            disallowed_special: ``"all"`` (every special token not allowed) or a collection of
                special-token strings whose presence in ``text`` raises ValueError; ``()`` to encode
                them as ordinary text instead.

        Returns:
            The list of ids.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` contains a disallowed special token (named in the message).
        """
        check_text(text)
        allowed, disallowed = resolve_special(allowed_special, disallowed_special, self._special)
        if disallowed:
            m = self._special_regex(disallowed).search(text)
            if m is not None:
                raise DisallowedSpecialError(
                    f"text contains the special token {m.group()!r} (at index {m.start()}) which is "
                    "disallowed; pass allowed_special={" + repr(m.group()) + "} (or 'all') to encode it "
                    "as its id, or disallowed_special=() to encode it as ordinary text",
                    m.group(), m.start(),
                )
        if not allowed:
            return self._encode_ordinary(text)
        ids: list[int] = []
        for piece, is_special in split_on_special(text, self._special_regex(allowed)):
            if is_special:
                ids.append(self._special[piece])
            else:
                ids.extend(self._encode_ordinary(piece))
        return ids

    def encode_batch(
        self,
        texts: Iterable[str],
        *,
        allowed_special: AllowedSpecial = frozenset(),
        disallowed_special: AllowedSpecial = "all",
    ) -> list[list[int]]:
        """Encode each string of ``texts`` with :meth:`encode`; returns one id list per text."""
        if isinstance(texts, str):
            raise DTypeError("encode_batch takes a list of str, got a single str; use encode()")
        return [
            self.encode(t, allowed_special=allowed_special, disallowed_special=disallowed_special)
            for t in texts
        ]

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ``ids`` to text; bytes that are not valid UTF-8 follow ``errors`` (``"replace"``: U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this tokenizer to ``path`` as JSON (atomically); :func:`load` restores it."""
        data = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "type": self.kind, **self._to_dict()}
        # One key per line, each value compact (a 50k-merge list stays one line, not 150k lines).
        # subtle: ensure_ascii (the default) escapes lone surrogates, which UTF-8 cannot hold.
        body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in data.items())
        return atomic_write_text(path, "{\n" + body + "\n}\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Read a tokenizer saved by :meth:`save`; on a subclass, the file must hold that kind."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileFormatError(f"{path} is not a tinygpt tokenizer file (not JSON: {e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise FileFormatError(f"{path} is not a tinygpt tokenizer file (no 'format': {FORMAT_NAME!r})")
        if data.get("version") != FORMAT_VERSION:
            raise FileFormatError(f"{path}: unsupported tokenizer file version {data.get('version')!r}")
        kind = data.get("type")
        klass = Tokenizer._registry.get(kind) if isinstance(kind, str) else None
        if klass is None:
            raise FileFormatError(f"{path}: unknown tokenizer type {kind!r}; known: {sorted(Tokenizer._registry)}")
        if not issubclass(klass, cls):
            raise FileFormatError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        special = data.get("special_tokens", {})
        if not isinstance(special, dict) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < MAX_ID for i in special.values()):
            raise FileFormatError(f"{path}: special_tokens must map strings to ids in [0, {MAX_ID}), "
                                  f"got {str(special)[:120]}")
        try:
            return klass._from_dict(data)
        except FileFormatError as e:
            raise FileFormatError(f"{path}: {e}") from None
        except UsageError as e:      # a value the tokenizer's constructor refuses (ConfigError, DTypeError)
            raise FileFormatError(f"{path}: not a valid {kind} tokenizer ({e})") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={len(self._special)})"


class VocabTokenizer(Tokenizer):
    """Base of the list-vocabulary tokenizers (char, simple): ordinary token ``i`` is ``tokens[i]``, then
    the special tokens, with an optional ``unk_token`` for what is not in the vocabulary.

    Subclasses check their tokens, call :meth:`_set_tokens`, and implement ``_encode_ordinary`` and
    ``decode`` (with :meth:`_lookup`); ``_to_dict`` saves the tokens under :attr:`tokens_key`.
    """

    tokens_key: ClassVar[str] = ""

    def _set_tokens(self, itos: list[str], special_tokens: Iterable[str], unk_token: str | None) -> None:
        if isinstance(special_tokens, str):
            raise DTypeError("special_tokens must be a collection of str, not a single str")
        if len(set(itos)) != len(itos):
            dup = sorted({t for t in itos if itos.count(t) > 1})
            raise ConfigError(f"{type(self).__name__} tokens must be distinct; repeated: {dup}")
        specials = list(special_tokens)
        if unk_token is not None and unk_token not in specials:
            specials.append(unk_token)
        self._special = _check_special_map({s: len(itos) + k for k, s in enumerate(specials)}, range(len(itos)))
        if len(self._special) != len(specials):
            raise ConfigError(f"special tokens must be distinct, got {specials}")
        self._itos = itos + specials
        self._stoi = {t: i for i, t in enumerate(itos)}
        self._unk_token = unk_token
        self._unk_id = None if unk_token is None else self._special[unk_token]

    @property
    def unk_token(self) -> str | None:
        """The token unknown input maps to, or None if it raises."""
        return self._unk_token

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def _lookup(self, ids: Iterable[int]) -> list[str]:
        """The token strings of ``ids``; UsageError naming an id outside the vocabulary."""
        ids = check_ids(ids)
        itos = self._itos
        n = len(itos)
        for i in ids:
            if not 0 <= i < n:
                raise UsageError(f"token id {i} is out of range for vocab_size {n}")
        return [itos[i] for i in ids]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        # subtle: a lone surrogate can be a vocabulary character; surrogatepass keeps it encodable.
        return self.decode(ids).encode("utf-8", errors="surrogatepass")

    def _to_dict(self) -> dict[str, Any]:
        return {
            self.tokens_key: self._itos[: len(self._stoi)],
            "special_tokens": self.special_tokens,
            "unk_token": self._unk_token,
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> VocabTokenizer:
        tokens = data.get(cls.tokens_key)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise FileFormatError(f"saved {cls.__name__}: {cls.tokens_key!r} must be a list of str, "
                                  f"got {str(tokens)[:80]}")
        if not isinstance(data.get("unk_token"), (str, type(None))):
            raise FileFormatError(f"saved {cls.__name__}: unk_token must be a str or null")
        special = data.get("special_tokens", {})
        ordered = sorted(special, key=special.__getitem__)
        tok = cls(data[cls.tokens_key], special_tokens=ordered, unk_token=data.get("unk_token"))
        if tok._special != special:
            raise FileFormatError(f"inconsistent special token ids in saved {cls.__name__}: {special}")
        return tok


def load(path: str | os.PathLike[str]) -> Tokenizer:
    """Load any tokenizer saved with ``save(path)`` (char, simple or BPE)."""
    return Tokenizer.load(path)


def _check_special_map(special: Mapping[str, int], taken: Iterable[int]) -> dict[str, int]:
    """Validate a ``{string: id}`` map of special tokens against the ids already in use."""
    out: dict[str, int] = {}
    used = set(taken)
    for s, i in special.items():
        if not isinstance(s, str) or not s:
            raise DTypeError(f"special token strings must be non-empty str, got {s!r}")
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ConfigError(f"special token {s!r} needs a non-negative int id, got {i!r}")
        if i in used:
            raise ConfigError(f"special token {s!r} has id {i}, which is already taken")
        used.add(i)
        out[s] = i
    return out
