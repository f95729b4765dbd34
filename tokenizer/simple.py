"""Word-level tokenizer of *Build a Large Language Model (From Scratch)*, chapter 2 (``SimpleTokenizerV2``).

Text is split on punctuation, ``--`` and whitespace (whitespace is dropped), each piece is looked up in a
vocabulary built from a training text, and unknown pieces become ``<|unk|>``. Decoding joins the pieces
with spaces and removes the space before punctuation, so it does not give back the exact input.

One difference from the book: special tokens follow tiktoken's rules like every tokenizer here, so
``"<|endoftext|>"`` in the text must be allowed explicitly (``allowed_special={"<|endoftext|>"}``);
by default it raises ValueError.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from tinytensor.errors import ConfigError, DTypeError

from .base import UnknownTokenError, VocabTokenizer, special_token_regex, split_on_special

__all__ = ["SIMPLE_SPLIT_PATTERN", "SimpleTokenizer", "simple_split"]

# The book's regex: split on these punctuation marks, on "--" and on single whitespace characters,
# keeping each separator (the capture group) so punctuation becomes its own token.
SIMPLE_SPLIT_PATTERN = r'([,.:;?_!"()\']|--|\s)'
_SPLIT = re.compile(SIMPLE_SPLIT_PATTERN)
# Decoding puts a space between every two tokens, then removes it again before punctuation.
_SPACE_BEFORE_PUNCT = re.compile(r'\s+([,.:;?!"()\'])')


def simple_split(text: str) -> list[str]:
    """Split ``text`` into the book's word and punctuation tokens, dropping whitespace.

    Example:
        >>> simple_split("Hello, world. Is this-- a test?")
        ['Hello', ',', 'world', '.', 'Is', 'this', '--', 'a', 'test', '?']
    """
    return [piece.strip() for piece in _SPLIT.split(text) if piece.strip()]


class SimpleTokenizer(VocabTokenizer):
    """Word-level tokenizer (the book's ``SimpleTokenizerV2``).

    Example:
        >>> tok = SimpleTokenizer.from_text("the cat sat. the end")
        >>> tok.encode("the dog sat.")
        [4, 6, 3, 0]
        >>> tok.decode([4, 6, 3, 0])
        'the <|unk|> sat.'

    Args:
        words: the vocabulary's ordinary tokens; ``words[i]`` gets id ``i``.
        special_tokens: strings that get the next ids, in order.
        unk_token: the token unknown words map to (also a special token, added after ``special_tokens``
            unless already among them); ``None`` makes an unknown word a ValueError instead.
    """

    kind = "simple"
    tokens_key = "words"

    def __init__(
        self,
        words: Iterable[str],
        *,
        special_tokens: Iterable[str] = ("<|endoftext|>",),
        unk_token: str | None = "<|unk|>",
    ) -> None:
        super().__init__()
        itos = list(words)
        for w in itos:
            if not isinstance(w, str) or not w:
                raise ConfigError(f"SimpleTokenizer words must be non-empty str, got {w!r}")
        self._set_tokens(itos, special_tokens, unk_token)

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        special_tokens: Iterable[str] = ("<|endoftext|>",),
        unk_token: str | None = "<|unk|>",
    ) -> SimpleTokenizer:
        """Build the vocabulary from the sorted set of :func:`simple_split` tokens of ``text``.

        Special-token strings in ``text`` are left out of the ordinary vocabulary. With the book's
        *The Verdict* this gives its 1,132-token vocabulary (``<|endoftext|>`` = 1130, ``<|unk|>`` = 1131).
        """
        if not isinstance(text, str):
            raise DTypeError(f"text must be str, got {type(text).__name__}")
        specials = list(special_tokens) + ([unk_token] if unk_token else [])
        pattern = special_token_regex(specials) if specials else None
        words: set[str] = set()
        for piece, is_special in split_on_special(text, pattern):
            if not is_special:
                words.update(simple_split(piece))
        return cls(sorted(words), special_tokens=special_tokens, unk_token=unk_token)

    @property
    def vocab(self) -> dict[str, int]:
        """``{token: id}`` for every token, special ones included (the book's ``str_to_int``)."""
        return {w: i for i, w in enumerate(self._itos)}

    def _encode_ordinary(self, text: str) -> list[int]:
        stoi = self._stoi
        words = simple_split(text)
        if self._unk_id is not None:
            unk = self._unk_id
            return [stoi.get(w, unk) for w in words]
        for i, w in enumerate(words):
            if w not in stoi:
                raise UnknownTokenError(f"word {w!r} is not in this SimpleTokenizer's vocabulary (and unk_token is "
                                        f"None)", w, i, len(stoi))
        return [stoi[w] for w in words]

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Join the tokens with spaces, then drop the space before punctuation (the book's decode).

        ``errors`` is accepted for the common interface and unused.
        """
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(self._lookup(ids)))
