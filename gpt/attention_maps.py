"""What a trained GPT attends to: the attention probabilities of one layer for a prompt, and their heat-map.

    weights, labels = attention_weights(model, tok, "ROMEO:", layer=0)   # [H, T, T], T token labels
    draw_attention(weights, labels, "attn.png", head=None)                # every head, or one

Row i of a head's map is query position i; its entries are the probabilities over the keys 0 .. i it
may see (the causal mask makes the upper triangle exactly 0).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

import tinytensor as tt
from tinytensor.errors import ConfigError

from .data import encode
from .figures import pyplot, save_png
from .model import GPT

__all__ = ["attention_weights", "draw_attention", "token_labels"]


def token_labels(tok, ids) -> list[str]:
    """One printable label per token: newlines and tabs escaped as ``repr`` shows them, spaces as ``␣``."""
    return [repr(tok.decode([int(i)]))[1:-1].replace(" ", "\u2423") for i in ids]


def attention_weights(model: GPT, tok, prompt: str, layer: int) -> tuple[np.ndarray, list[str]]:
    """The attention probabilities ``[H, T, T]`` of block ``layer`` for ``prompt``, and the token labels.

    Raises:
        ConfigError: ``layer`` out of range, or a prompt that is empty or longer than the context.
    """
    n_layer = model.config.n_layer
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < n_layer:
        raise ConfigError(f"layer must be in [0, {n_layer}) for this model, got {layer!r}")
    ids = encode(tok, prompt)
    if not ids:
        raise ConfigError(f"the prompt {prompt!r} encodes to no tokens")
    if len(ids) > model.config.block_size:
        raise ConfigError(f"the prompt has {len(ids)} tokens; the model sees at most {model.config.block_size}")
    attn = model.transformer.h[layer].attn
    attn.keep_weights = True
    try:
        with tt.no_grad():
            model(np.array([ids]))
        weights = attn.weights[0]                                      # [H, T, T]
    finally:
        attn.keep_weights, attn.weights = False, None
    return weights, token_labels(tok, ids)


def draw_attention(weights: np.ndarray, labels: list[str], path: str | os.PathLike, head: int | None = None,
                   title: str = "") -> Path:
    """A heat-map PNG: one head's ``[T, T]`` map, or a grid of all heads; queries down, keys across."""
    H = weights.shape[0]
    if head is not None and not 0 <= head < H:
        raise ConfigError(f"head must be in [0, {H}) for this model, got {head}")
    heads = [head] if head is not None else list(range(H))
    cols = min(len(heads), 4)
    rows = math.ceil(len(heads) / cols)
    T = len(labels)
    cell = max(3.0, 0.28 * T)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 1.0, cell * rows + 0.6), squeeze=False)
    for ax in axes.flat[len(heads):]:
        ax.axis("off")
    for ax, h in zip(axes.flat, heads):
        im = ax.imshow(weights[h], vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(T), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(T), labels, fontsize=7)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention probability")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)
