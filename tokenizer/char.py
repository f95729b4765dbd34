"""Character-level tokenizer: one id per Unicode code point seen in the training text."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinytensor.errors import ConfigError, DTypeError, FileFormatError, UsageError

from .base import Tokenizer, _check_special_map, check_ids

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """One id per character, in the order given (``from_text`` sorts them), then the special tokens.

    Example:
        >>> tok = CharTokenizer.from_text("hello")
        >>> tok.encode("hole")
        [1, 3, 2, 0]
        >>> tok.decode([1, 0, 2, 2, 3])
        'hello'
        >>> tok.encode("help")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        tinytensor.errors.UsageError: character 'p' (U+0070) at index 3 is not in this CharTokenizer's vocabulary ...

    Args:
        chars: the distinct characters of the vocabulary; character ``chars[i]`` gets id ``i``.
        special_tokens: strings that get the next ids, in order (e.g. ``["<|endoftext|>"]``).
        unk_token: if given, unknown characters encode to this token's id instead of raising; it is a
            special token too (added after ``special_tokens`` unless already among them).
    """

    kind = "char"

    def __init__(
        self,
        chars: Iterable[str],
        *,
        special_tokens: Iterable[str] = (),
        unk_token: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(special_tokens, str):
            raise DTypeError("special_tokens must be a collection of str, not a single str")
        itos = list(chars)
        for c in itos:
            if not isinstance(c, str) or len(c) != 1:
                raise ConfigError(f"CharTokenizer characters must be single-character str, got {c!r}")
        if len(set(itos)) != len(itos):
            dup = sorted({c for c in itos if itos.count(c) > 1})
            raise ConfigError(f"CharTokenizer characters must be distinct; repeated: {dup}")
        specials = list(special_tokens)
        if unk_token is not None and unk_token not in specials:
            specials.append(unk_token)
        self._special = _check_special_map(
            {s: len(itos) + k for k, s in enumerate(specials)}, range(len(itos))
        )
        if len(self._special) != len(specials):
            raise ConfigError(f"special tokens must be distinct, got {specials}")
        self._itos = itos + specials
        self._stoi = {c: i for i, c in enumerate(itos)}
        self._unk_token = unk_token
        self._unk_id = None if unk_token is None else self._special[unk_token]

    @classmethod
    def from_text(
        cls, text: str, *, special_tokens: Iterable[str] = (), unk_token: str | None = None
    ) -> CharTokenizer:
        """Build the vocabulary from the sorted set of characters in ``text``."""
        if not isinstance(text, str):
            raise DTypeError(f"text must be str, got {type(text).__name__}")
        return cls(sorted(set(text)), special_tokens=special_tokens, unk_token=unk_token)

    @property
    def chars(self) -> list[str]:
        """The ordinary characters, in id order."""
        return self._itos[: len(self._stoi)]

    @property
    def unk_token(self) -> str | None:
        """The token unknown characters map to, or None if they raise."""
        return self._unk_token

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def _encode_ordinary(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return list(map(stoi.__getitem__, text))
        except KeyError:
            pass
        if self._unk_id is not None:
            unk = self._unk_id
            return [stoi.get(c, unk) for c in text]
        for pos, c in enumerate(text):
            if c not in stoi:
                raise UsageError(
                    f"character {c!r} (U+{ord(c):04X}) at index {pos} is not in this CharTokenizer's "
                    f"vocabulary of {len(stoi)} characters; build it from text that contains it, "
                    "or pass unk_token='<unk>'"
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _lookup(self, ids: Iterable[int]) -> list[str]:
        ids = check_ids(ids)
        itos = self._itos
        n = len(itos)
        for i in ids:
            if not 0 <= i < n:
                raise UsageError(f"token id {i} is out of range for vocab_size {n}")
        return [itos[i] for i in ids]

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Join the characters of ``ids`` (``errors`` is accepted for the common interface; unused)."""
        return "".join(self._lookup(ids))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        # subtle: a lone surrogate can be a vocabulary character; surrogatepass keeps it encodable.
        return self.decode(ids).encode("utf-8", errors="surrogatepass")

    def _to_dict(self) -> dict[str, Any]:
        return {
            "chars": self.chars,
            "special_tokens": self.special_tokens,
            "unk_token": self._unk_token,
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        chars = data["chars"]
        special = data.get("special_tokens", {})
        ordered = sorted(special, key=special.__getitem__)
        tok = cls(chars, special_tokens=ordered, unk_token=data.get("unk_token"))
        if tok._special != special:
            raise FileFormatError(f"inconsistent special token ids in saved CharTokenizer: {special}")
        return tok
