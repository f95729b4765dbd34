"""Character-level tokenizer: one id per Unicode code point seen in the training text."""
from __future__ import annotations

from collections.abc import Iterable

from tinytensor.errors import ConfigError, DTypeError

from .base import UnknownTokenError, VocabTokenizer

__all__ = ["CharTokenizer"]


class CharTokenizer(VocabTokenizer):
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
        tokenizer.base.UnknownTokenError: character 'p' (U+0070) at index 3 is not in this CharTokenizer's vocabulary ...

    Args:
        chars: the distinct characters of the vocabulary; character ``chars[i]`` gets id ``i``.
        special_tokens: strings that get the next ids, in order (e.g. ``["<|endoftext|>"]``).
        unk_token: if given, unknown characters encode to this token's id instead of raising; it is a
            special token too (added after ``special_tokens`` unless already among them).
    """

    kind = "char"
    tokens_key = "chars"

    def __init__(
        self,
        chars: Iterable[str],
        *,
        special_tokens: Iterable[str] = (),
        unk_token: str | None = None,
    ) -> None:
        super().__init__()
        itos = list(chars)
        for ch in itos:
            if not isinstance(ch, str) or len(ch) != 1:
                raise ConfigError(f"CharTokenizer characters must be single-character str, got {ch!r}")
        self._set_tokens(itos, special_tokens, unk_token)

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
                raise UnknownTokenError(
                    f"character {c!r} (U+{ord(c):04X}) at index {pos} is not in this CharTokenizer's "
                    f"vocabulary of {len(stoi)} characters; build it from text that contains it, "
                    "or pass unk_token='<unk>'",
                    c, pos, len(stoi),
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Join the characters of ``ids`` (``errors`` is accepted for the common interface; unused)."""
        return "".join(self._lookup(ids))
