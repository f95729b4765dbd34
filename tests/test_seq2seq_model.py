"""The encoder–decoder Transformer: float64 gradients end to end, masks, cached decoding equal to the
uncached reference, clear errors, and (with torch installed) one step against a PyTorch twin."""
from __future__ import annotations

import numpy as np
import pytest

import tinytensor as tt
from gpt import Transformer, TransformerConfig
from gpt.seq2seq import TrainSettings, beam_search, greedy, length_penalty
from tinytensor.optim import noam_lr


def tiny(**kw) -> TransformerConfig:
    return TransformerConfig(**{"vocab_size": 9, "d_model": 8, "n_head": 2, "d_ff": 12, "n_layer": 2,
                                "dropout": 0.0, "max_len": 12, **kw})


def batch(rng, B=3, S=5, T=4, V=9):
    src = rng.integers(3, V, (B, S))
    src[0, -2:] = 0                                 # padded source row
    tgt_in = np.concatenate([np.ones((B, 1), np.int64), rng.integers(3, V, (B, T - 1))], axis=1)
    targets = rng.integers(3, V, (B, T))
    targets[1, -1] = 0                              # an ignored (pad) target
    return src, tgt_in, targets


@pytest.mark.parametrize("norm_first", [False, True])
def test_whole_encoder_decoder_gradcheck_float64(norm_first, rng):
    m = Transformer(tiny(norm_first=norm_first, label_smoothing=0.1), seed=1).to_dtype(np.float64)
    src, tgt_in, targets = batch(rng)
    params = list(m.parameters())
    res = tt.gradcheck(lambda *_: m(src, tgt_in, targets)[1], params, full_max=0, n_proj=8, name="transformer")
    assert res.mode == "projection" and res.passed
    m(src, tgt_in, targets)[1].backward()
    assert all(p.grad is not None and np.abs(p.grad).sum() > 0 for p in params)    # every weight is used


def test_source_padding_changes_nothing_for_the_real_positions(rng):
    m = Transformer(tiny(), seed=2).to_dtype(np.float64).eval()
    src, tgt_in, _ = batch(rng)
    src[0, -2:] = 5                                 # row 0 unpadded, length 5
    short = src[:, :3].copy()                      # every row cut to 3 ...
    padded = np.concatenate([short, np.zeros((3, 4), np.int64)], axis=1)   # ... then padded to 7
    with tt.no_grad():
        a = m(short, tgt_in)[0].data
        b = m(padded, tgt_in)[0].data
        memory_a, _ = m.encode(short)
        memory_b, _ = m.encode(padded)
    np.testing.assert_allclose(b, a, atol=1e-12)
    np.testing.assert_allclose(memory_b.data[:, :3], memory_a.data, atol=1e-12)
    full = m(src, tgt_in)[0].data                   # and the padding mask does act: unpadded differs
    assert np.abs(full - a).max() > 1e-3


def test_target_is_causal(rng):
    m = Transformer(tiny(), seed=3).to_dtype(np.float64).eval()
    src, tgt_in, _ = batch(rng)
    changed = tgt_in.copy()
    changed[:, -1] = 3 + (tgt_in[:, -1] - 2) % 6
    a, b = m(src, tgt_in)[0].data, m(src, changed)[0].data
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-12)
    assert np.abs(a[:, -1] - b[:, -1]).max() > 1e-6


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_equals_uncached(norm_first, rng):
    m = Transformer(tiny(norm_first=norm_first, max_len=10), seed=4).to_dtype(np.float64)
    src = rng.integers(3, 9, (4, 6))
    src[1, -3:] = 0
    for decode in (greedy, lambda *a, **k: beam_search(*a, beam=3, alpha=0.6, **k)):
        cached, plain = decode(m, src), decode(m, src, use_cache=False)
        assert [h.tokens for h in cached] == [h.tokens for h in plain]
        np.testing.assert_allclose([h.logprob for h in cached], [h.logprob for h in plain], rtol=1e-10)
        np.testing.assert_allclose([h.score for h in cached], [h.score for h in plain], rtol=1e-10)
    assert m.training                                # decoding restores the mode


def test_decode_step_equals_the_last_row_of_decode(rng):
    m = Transformer(tiny(), seed=5).to_dtype(np.float64).eval()
    src, tgt_in, _ = batch(rng)
    with tt.no_grad():
        memory, mask = m.encode(src)
        full = m.decode(tgt_in, memory, mask).data                       # [B, T, V]
        cache = m.start_cache(memory)
        steps = [m.decode_step(tgt_in[:, t:t + 1], t, cache, mask).data[:, 0] for t in range(tgt_in.shape[1])]
    np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-12)


def test_beam_search_scores_with_the_length_penalty(rng):
    m = Transformer(tiny(max_len=8), seed=6).to_dtype(np.float64)
    src = rng.integers(3, 9, (2, 5))
    for h in beam_search(m, src, beam=4, alpha=0.6):
        n = len(h.tokens) + (len(h.tokens) < 8)          # the EOS counts when there is one
        assert h.score == pytest.approx(h.logprob / length_penalty(n, 0.6))
    assert length_penalty(1, 0.6) == 1.0 and length_penalty(7, 1.0) == 2.0
    one = beam_search(m, src, beam=1, alpha=0.0)         # beam 1, no penalty: greedy
    assert [h.tokens for h in one] == [h.tokens for h in greedy(m, src)]
    # a wider beam never finds a worse best score than a narrower one here
    assert all(b.score >= a.score - 1e-12 for a, b in zip(beam_search(m, src, beam=1), beam_search(m, src, beam=4)))


def test_noam_schedule_and_adam_settings():
    assert noam_lr(1, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert noam_lr(4000, 512, 4000) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)   # the peak
    assert noam_lr(16000, 512, 4000) == pytest.approx(noam_lr(4000, 512, 4000) / 2)
    assert noam_lr(10, 64, 5, factor=2.0) == pytest.approx(2 * 64 ** -0.5 * 10 ** -0.5)
    with pytest.raises(tt.ConfigError, match="got 0"):
        noam_lr(0, 512, 4000)
    g = Transformer(tiny(), seed=0).configure_optimizer().param_groups[0]
    assert (g["betas"], g["eps"], g["weight_decay"]) == ((0.9, 0.98), 1e-9, 0.0)


def test_tied_embedding_and_parameter_names():
    m = Transformer(tiny(norm_first=True), seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert names[0] == "embed.weight" and "enc_norm.weight" in names and "dec_norm.weight" in names
    assert not any("pos" in n for n in names)             # the sinusoidal positions are no parameters
    assert "enc_norm.weight" not in [n for n, _ in Transformer(tiny(), seed=0).named_parameters()]


def test_bad_inputs_name_the_value(rng):
    m = Transformer(tiny(), seed=0)
    src, tgt_in, targets = batch(rng)
    with pytest.raises(tt.ShapeError, match="length 13, longer than max_len 12"):
        m(rng.integers(3, 9, (2, 13)), tgt_in[:2])
    with pytest.raises(tt.ShapeError, match="decoder input.*length 13, longer than max_len 12"):
        m(src, rng.integers(3, 9, (3, 13)))
    bad = src.copy()
    bad[1, 2] = 9
    with pytest.raises(tt.UsageError, match=r"the source holds token id 9, outside \[0, 9\)"):
        m(bad, tgt_in)
    with pytest.raises(tt.ShapeError, match=r"got shape \(5,\)"):
        m(src[0], tgt_in)
    with pytest.raises(tt.DTypeError, match="float64"):
        m(src.astype(float), tgt_in)
    with pytest.raises(tt.ShapeError, match=r"targets have shape \(3, 3\)"):
        m(src, tgt_in, targets[:, :3])
    with pytest.raises(tt.ShapeError, match=r"src_padding_mask has shape \(3, 4\), the source \(3, 5\)"):
        m.encode(src, src[:, :4] == 0)
    with pytest.raises(tt.DTypeError, match="src_padding_mask must be bool.*int64"):
        m.encode(src, (src == 0).astype(np.int64))
    with pytest.raises(tt.ConfigError, match="multiple of n_head 3"):
        tiny(n_head=3)
    with pytest.raises(tt.ConfigError, match="eos_id must be a token id in \\[0, 9\\), got 9"):
        tiny(eos_id=9)
    with pytest.raises(tt.ConfigError, match="beam must be an integer >= 1, got 0"):
        beam_search(m, src, beam=0)
    with pytest.raises(tt.ConfigError, match="max_new must be in \\[1, max_len 12\\], got 13"):
        greedy(m, src, max_new=13)


@pytest.mark.parametrize("norm_first", [False, True])
def test_one_step_matches_a_pytorch_twin(norm_first, rng):
    torch = pytest.importorskip("torch")
    from benchmarks import _torch_transformer
    cfg = tiny(norm_first=norm_first, label_smoothing=0.1)
    m = Transformer(cfg, seed=7).to_dtype(np.float64)
    twin = _torch_transformer.build({**vars(cfg), "dtype": torch.float64})
    _torch_transformer.copy_from(twin, m)
    twin.train()                                   # dropout 0: training mode avoids torch's inference fast path
    src, tgt_in, targets = batch(rng)
    logits, loss = m(src, tgt_in, targets)
    loss.backward()
    t_logits, t_loss = twin(*(torch.tensor(a) for a in (src, tgt_in, targets)))
    t_loss.backward()
    np.testing.assert_allclose(logits.data, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(t_loss.item(), rel=1e-12)
    ours = _torch_transformer.state_from(m, "grad")
    theirs = dict(twin.named_parameters())
    assert set(ours) == set(theirs)
    for name, g in ours.items():
        np.testing.assert_allclose(g, theirs[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("make, match", [
    (lambda: TransformerConfig(vocab_size=9, d_model=0), r"TransformerConfig\.d_model must be an int >= 1, got 0"),
    (lambda: TransformerConfig(vocab_size=9, n_layer=True),
     r"TransformerConfig\.n_layer must be an int >= 1, got True"),
    (lambda: TrainSettings(task="copy", out_dir="x", steps=0), r"steps must be an int >= 1, got 0"),
    (lambda: TrainSettings(task="copy", out_dir="x", beam=2.0), r"beam must be an int >= 1, got 2\.0"),
])
def test_count_fields_are_ints_named_in_the_error(make, match):
    with pytest.raises(tt.ConfigError, match=match):
        make()
