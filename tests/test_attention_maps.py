"""Attention maps (gpt.attention_maps, ``tinygpt attention``): the weights are the ones the model uses."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import tinytensor as tt
from tinytensor import functional as F
from tinytensor.errors import ConfigError
from gpt import GPT, GPTConfig
from gpt.attention_maps import attention_weights, draw_attention
from gpt.blocks import causal_attention_weights
from tokenizer import CharTokenizer


def test_causal_weights_times_v_is_the_fused_attention_output():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 5, 4))
    k = rng.normal(size=(2, 3, 7, 4))            # S > T: a cached prefix of 2 positions
    v = rng.normal(size=(2, 3, 7, 4))
    w = causal_attention_weights(q, k)
    assert w.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    assert np.all(w[..., 0, 3:] == 0) and np.all(w[..., 4, :] > 0)   # query 0 sees keys 0..2, the last all
    y = F.scaled_dot_product_attention(tt.tensor(q), tt.tensor(k), tt.tensor(v), causal=True).numpy()
    np.testing.assert_allclose(w @ v, y, rtol=1e-10, atol=1e-12)


def _model():
    tok = CharTokenizer.from_text("hello world,\nto be or not")
    model = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=8), seed=0)
    model.eval()
    return model, tok


def test_attention_weights_of_a_layer_and_their_labels():
    model, tok = _model()
    w, labels = attention_weights(model, tok, "to be\n", layer=1)
    assert w.shape == (2, 6, 6) and labels == ["t", "o", "\u2423", "b", "e", "\\n"]
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.triu(w[0], 1) == 0)
    assert not model.transformer.h[1].attn.keep_weights            # switched off again
    with pytest.raises(ConfigError, match=r"layer must be in \[0, 2\)"):
        attention_weights(model, tok, "to", layer=2)
    with pytest.raises(ConfigError, match="at most 16"):
        attention_weights(model, tok, "to be or not to be", layer=0)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason='needs matplotlib: pip install ".[plot]"')
def test_draw_attention_writes_a_png(tmp_path):
    model, tok = _model()
    w, labels = attention_weights(model, tok, "hello", layer=0)
    path = draw_attention(w, labels, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match=r"head must be in \[0, 2\)"):
        draw_attention(w, labels, tmp_path / "b.png", head=5)
