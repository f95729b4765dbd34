"""Text in, batches out: find the text, pick the tokenizer, tokenize once into a cache, draw seeded batches.

* :mod:`.datasets`: :func:`resolve_text` finds a dataset by name or path; :func:`training_text` a
  checkpoint's text.
* :mod:`.tokenizers`: :func:`build_tokenizer` (``char``, ``gpt2`` or a path) and :func:`load_tokenizer`.
* :mod:`.tokens`: :func:`prepare_tokens` encodes the text once into ``.npy`` files (90 % train, 10 % val).
* :mod:`.batches`: :class:`BatchSampler` and :func:`make_samplers` (one seeded stream each).
"""
from .batches import STREAM_EVAL_TRAIN, STREAM_EVAL_VAL, STREAM_TRAIN, BatchSampler, make_samplers
from .datasets import DATASETS, RemoteText, resolve_text, training_text
from .tokenizers import TOKENIZER_FILES, build_tokenizer, encode, load_tokenizer, tokenizer_bytes
from .tokens import VAL_FRACTION, prepare_tokens

__all__ = ["BatchSampler", "DATASETS", "RemoteText", "STREAM_EVAL_TRAIN", "STREAM_EVAL_VAL", "STREAM_TRAIN",
           "TOKENIZER_FILES", "VAL_FRACTION", "build_tokenizer", "encode", "load_tokenizer", "make_samplers",
           "prepare_tokens", "resolve_text", "tokenizer_bytes", "training_text"]
