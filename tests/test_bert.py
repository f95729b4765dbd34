"""The BERT-style encoder (gpt.bert): gradients end to end, padding, the 80/10/10 masking rule, the
run files, the CLI (pretrain, fill, classify, predict), bad input, and a PyTorch twin when torch is there."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import tinytensor as tt
from gpt.bert import (IGNORE_INDEX, Bert, BertClassifier, BertClassifyConfig, BertConfig, PretrainConfig, SpecialIds,
                      fill, finetune_bert_classifier, frame, load_bert, mask_tokens, pretrain, save_bert,
                      special_ids, train_tokenizer)
from gpt.bert.classify import ensemble_report
from gpt.bert.pretrain import unigram_argmax
from gpt.cli import main
from gpt.finetune.spam import Example
from tinytensor.errors import ConfigError, ShapeError, UsageError
from tokenizer import BPETokenizer

SP = SpecialIds(pad=0, cls=1, sep=2, mask=3)
TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
        "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles.\n") * 40


def tiny(**kw) -> BertConfig:
    return BertConfig(**{"vocab_size": 11, "block_size": 6, "n_layer": 2, "n_head": 2, "n_embd": 8,
                         "dropout": 0.0, "pad_id": 0, **kw})


# ------------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("norm_first", [False, True])
def test_mlm_loss_gradcheck_float64(rng, norm_first):
    m = Bert(tiny(n_segments=2, norm_first=norm_first), seed=1).to_dtype(np.float64)
    idx = np.array([[1, 5, 3, 7, 2, 0], [1, 4, 9, 3, 8, 2]])            # row 0 padded once
    tgt = np.full(idx.shape, IGNORE_INDEX)
    tgt[0, 2], tgt[1, 1], tgt[1, 3] = 6, 9, 10
    seg = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    params = list(m.parameters())
    res = tt.gradcheck(lambda *_: m(idx, tgt, segments=seg)[1], params, full_max=0, n_proj=8, name="bert-mlm")
    assert res.mode == "projection" and res.passed
    names = dict(m.named_parameters())
    assert "embeddings.wte.weight" in names and not any(n.startswith("mlm._wte") for n in names)   # tied once


def test_classifier_loss_gradcheck_float64():
    clf = BertClassifier(Bert(tiny(), seed=2), num_classes=3, seed=3)
    for p in clf.parameters():
        p.data = p.data.astype(np.float64)
    idx = np.array([[1, 5, 6, 2, 0, 0], [1, 4, 9, 3, 8, 2]])
    res = tt.gradcheck(lambda *_: clf(idx, None, np.array([2, 0]))[1], list(clf.parameters()),
                       full_max=0, n_proj=8, name="bert-cls")
    assert res.passed


def test_mlm_logits_at_chosen_positions_equal_the_full_logits(rng):
    m = Bert(tiny(), seed=4).eval()
    idx = rng.integers(4, 11, (3, 6))
    tgt = np.where(rng.random((3, 6)) < 0.4, rng.integers(4, 11, (3, 6)), IGNORE_INDEX)
    tgt[0, 0] = 5
    full, none = m(idx)
    some, loss = m(idx, tgt)
    b, t = np.nonzero(tgt != IGNORE_INDEX)
    assert none is None and full.shape == (3, 6, 11) and some.shape == (len(b), 11)
    np.testing.assert_allclose(some.data, full.data[b, t], rtol=1e-5, atol=1e-6)
    z = full.data[b, t].astype(np.float64)
    want = np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(len(b)), tgt[b, t]])
    assert abs(loss.item() - want) < 1e-5


# --------------------------------------------------------------------------------------------- padding
def test_padding_does_not_change_the_real_positions(rng):
    m = Bert(tiny(block_size=8), seed=5).eval()
    short = np.array([1, 6, 7, 8, 2])                                   # [CLS] 6 7 8 [SEP]
    long = np.array([1, 4, 5, 6, 7, 9, 10, 2])
    alone = m.hidden_states(short[None]).data[0]
    batch = np.stack([np.concatenate([short, [0, 0, 0]]), long])
    padded = m.hidden_states(batch).data
    np.testing.assert_allclose(padded[0, :5], alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(padded[1], m.hidden_states(long[None]).data[0], rtol=1e-5, atol=1e-5)
    clf = BertClassifier(m, 2).eval()
    np.testing.assert_allclose(clf(batch)[0].data[0], clf(short[None])[0].data[0], rtol=1e-5, atol=1e-5)
    # and without the mask the pads would change it: the test can fail
    m.config.pad_id = 10
    assert not np.allclose(m.hidden_states(batch).data[0, :5], alone, atol=1e-4)


# --------------------------------------------------------------------------------------------- masking
def test_masking_follows_berts_80_10_10_rule():
    V, B, T = 1000, 400, 100
    g = np.random.default_rng(0)
    idx = g.integers(4, V, (B, T))
    idx[:, 0], idx[:, -1] = SP.cls, SP.sep
    idx[::2, 80:] = SP.pad                                              # every other row padded
    idx[1::2, 40] = SP.sep                                              # a second [SEP] mid-row
    x, y = mask_tokens(idx, SP, V, np.random.default_rng(7))
    chosen = y != IGNORE_INDEX
    special = np.isin(idx, SP.all)
    assert not (chosen & special).any()                                 # specials never chosen
    np.testing.assert_array_equal(x[special], idx[special])             # nor changed
    np.testing.assert_array_equal(y[chosen], idx[chosen])               # targets are the originals
    np.testing.assert_array_equal(x[~chosen], idx[~chosen])             # unchosen positions untouched
    n_ord = (~special).sum(axis=1)
    np.testing.assert_array_equal(chosen.sum(axis=1), np.maximum(1, np.round(0.15 * n_ord)))
    n = chosen.sum()
    masked = (x == SP.mask) & chosen
    kept = (x == idx) & chosen
    rand = chosen & ~masked & ~kept
    # binomial proportions: 4 standard deviations of n ~ 5,000 draws
    for got, p in ((masked.sum(), 0.8), (rand.sum(), 0.1 * (1 - 1 / (V - 4))), (kept.sum(), 0.1 + 0.1 / (V - 4))):
        assert abs(got / n - p) < 4 * np.sqrt(p * (1 - p) / n), (got / n, p)
    assert not np.isin(x[rand], SP.all).any()                           # random tokens are ordinary
    x2, y2 = mask_tokens(idx, SP, V, np.random.default_rng(7))          # seeded
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, mask_tokens(idx, SP, V, np.random.default_rng(8))[0])


def test_masking_bad_input():
    with pytest.raises(ShapeError, match=r"\[B, T\] integer ids, got shape \(3,\)"):
        mask_tokens(np.arange(3), SP, 10, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="mask_prob"):
        mask_tokens(np.ones((1, 3), int), SP, 10, np.random.default_rng(0), mask_prob=1.5)
    np.testing.assert_array_equal(frame([7, 8, 9], SP, 4), [1, 7, 8, 2])


# ----------------------------------------------------------------------------------- tokenizer and files
def test_tokenizer_has_the_four_specials_and_they_survive_saving(tmp_path):
    tok = train_tokenizer(TEXT, 300)
    sp = special_ids(tok)
    assert sorted(sp.all) == [296, 297, 298, 299] and tok.vocab_size == 300
    assert tok.encode("to [MASK] or", allowed_special={"[MASK]"}).count(sp.mask) == 1
    m = Bert(BertConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=8, pad_id=sp.pad))
    save_bert(tmp_path, m, tok, {"note": 1})
    m2, tok2, doc = load_bert(tmp_path)
    assert special_ids(tok2) == sp and doc["note"] == 1 and doc["task"] == "mlm"
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)
    with pytest.raises(ConfigError, match=r"no \[PAD\], \[CLS\], \[SEP\], \[MASK\]"):
        special_ids(BPETokenizer())
    (tmp_path / "bert.safetensors").write_bytes(b"junk")
    with pytest.raises(tt.FileFormatError, match="damaged"):
        load_bert(tmp_path)


def test_unigram_baseline_is_the_training_splits_most_frequent_ordinary_token():
    assert unigram_argmax(np.array([0, 0, 0, 5, 5, 6]), SP, 8) == 5        # the [PAD]s do not count


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_pretrain_then_fill(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    out = tmp_path / "run"
    rc = main(["bert", "pretrain", "--data", str(data), "--out_dir", str(out), "--vocab_size", "300",
               "--n_layer", "1", "--n_embd", "16", "--n_head", "2", "--block_size", "16", "--max_iters", "6",
               "--eval_interval", "3", "--batch_size", "4", "--warmup_iters", "2", "--no_progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    m = re.search(r"masked-token accuracy: (\d+\.\d)% \(unigram baseline (\d+\.\d)%\)", printed)
    assert m, printed
    log = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [3, 6]
    assert f"{100 * log[-1]['val_accuracy']:.1f}" == m.group(1)
    assert main(["bert", "fill", "--out_dir", str(out), "--top_k", "3", "To be or not to [MASK]"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[MASK] 1:" and len(lines) == 4
    probs = [float(s.split("%")[0]) for s in lines[1:]]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 100 for p in probs)
    res = fill(str(out), "[MASK] be or not to [MASK]", top_k=2)
    assert len(res) == 2 and all(len(r) == 2 for r in res)
    assert not any(t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") for r in res for t, _ in r)


@pytest.mark.filterwarnings("ignore:training text ran out of pairs")
def test_fill_and_pretrain_bad_input(tmp_path, capsys):
    m = Bert(BertConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=8, pad_id=296))
    tok = train_tokenizer(TEXT, 300)
    with pytest.raises(UsageError, match=r"has no \[MASK\]"):
        fill(m, "To be or not to be", tokenizer=tok)
    with pytest.raises(UsageError, match="block_size=8"):
        fill(m, "To be or not to be, that is the [MASK]", tokenizer=tok)
    with pytest.raises(UsageError, match="top_k"):
        fill(m, "to [MASK]", top_k=0, tokenizer=tok)
    save_bert(tmp_path / "r", m, tok, {})
    assert main(["bert", "fill", "--out_dir", str(tmp_path / "r"), "no mask here"]) == 2
    assert "has no [MASK]" in capsys.readouterr().err
    assert main(["bert", "fill", "--out_dir", str(tmp_path / "none"), "a [MASK]"]) == 2
    assert "no BERT run" in capsys.readouterr().err
    with pytest.raises(ShapeError, match=r"T <= block_size=8, got shape \(1, 9\)"):
        m(np.ones((1, 9), dtype=np.int64))
    with pytest.raises(ShapeError, match=r"\[0, vocab_size=300\)"):
        m(np.array([[1, 300]]))
    with pytest.raises(ShapeError, match="choose no position"):
        m(np.array([[1, 5]]), np.full((1, 2), IGNORE_INDEX))
    with pytest.raises(ConfigError, match="n_embd 10 must be a multiple of n_head 4"):
        BertConfig(n_embd=10, n_head=4)
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="too few for windows"):
        pretrain(PretrainConfig(data=str(short), out_dir=str(tmp_path / "x"), vocab_size=300, block_size=16),
                 progress=False, quiet=True)


def _rows(n: int = 40) -> list[Example]:
    g = np.random.default_rng(0)
    ham = ["see you at six", "ok lor, on my way home", "can you call me later", "what time is dinner"]
    spam = ["WINNER!! claim your FREE prize now, txt WIN to 80082", "URGENT: you have won a cash award, call now"]
    return ([Example(f"{ham[i % 4]} {g.integers(100)}", 0, i) for i in range(n)]
            + [Example(f"{spam[i % 2]} {g.integers(100)}", 1, n + i) for i in range(n)])


def test_classify_fine_tuning_and_predict(tmp_path, capsys):
    tok = train_tokenizer(TEXT + "".join(r.text + "\n" for r in _rows()), 300)
    sp = special_ids(tok)
    save_bert(tmp_path / "pre", Bert(BertConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=16,
                                                pad_id=sp.pad), seed=0), tok, {})
    cfg = BertClassifyConfig(init_from=str(tmp_path / "pre"), out_dir=str(tmp_path / "clf"), epochs=3,
                             batch_size=8, lr=3e-3, warmup_steps=0)
    res = finetune_bert_classifier(cfg, quiet=True, rows=_rows())
    assert res.test["n"] == 16 and res.test["accuracy"] >= 0.75     # two templates per class: easy
    assert np.array(res.test["confusion"]).sum() == 16
    metrics = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == res.test["accuracy"]
    alone = ensemble_report([str(tmp_path / "clf")], "test", rows=_rows())     # an ensemble of one is the run
    assert alone["confusion"] == res.test["confusion"]
    assert main(["bert", "predict", "--out_dir", str(tmp_path / "clf"), "WINNER!! claim your FREE prize now",
                 "see you at six"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [s.split("\t")[0] for s in out] == ["spam", "ham"]
    with pytest.raises(ConfigError, match="already a classifier"):
        finetune_bert_classifier(BertClassifyConfig(init_from=str(tmp_path / "clf"), out_dir=str(tmp_path / "y")),
                                 quiet=True, rows=_rows())
    assert main(["bert", "fill", "--out_dir", str(tmp_path / "clf"), "a [MASK]"]) == 2


def test_classify_cross_validation_folds_keep_last(tmp_path, capsys):
    """k-fold CV of a BERT recipe (gpt.finetune.cv with a BERT fit): no test split, the final epoch kept."""
    from gpt.finetune.cv import cross_validate, pool_rows
    tok = train_tokenizer(TEXT + "".join(r.text + "\n" for r in _rows()), 300)
    save_bert(tmp_path / "pre", Bert(BertConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=16,
                                                pad_id=special_ids(tok).pad), seed=0), tok, {})
    cfg = BertClassifyConfig(init_from=str(tmp_path / "pre"), out_dir=str(tmp_path / "cv"), epochs=2,
                             batch_size=8, lr=3e-3, warmup_steps=0, keep="last")
    cv = cross_validate(cfg, k=2, rows=_rows(), fit=lambda c, fold: finetune_bert_classifier(
        c, progress=False, quiet=True, splits=fold))
    assert [r["kept_epoch"] for r in cv.runs] == [2, 2] and cv.n == len(pool_rows(_rows())) == 64
    err = capsys.readouterr().err                                  # no epoch is called "best" under keep="last"
    assert "epoch 2: train loss" in err and "(best)" not in err
    assert [r["n_val"] for r in cv.runs] == [32, 32] and cv.correct == sum(r["correct"] for r in cv.runs)
    with pytest.raises(ConfigError, match="keep must be best or last"):
        BertClassifyConfig(init_from="x", out_dir="y", keep="middle")


# ------------------------------------------------------------------------------------------ torch twin
def test_matches_a_pytorch_twin(rng):
    torch = pytest.importorskip("torch")
    nnt = torch.nn
    cfg = BertConfig(vocab_size=13, block_size=7, n_layer=2, n_head=2, n_embd=8, d_ff=12, dropout=0.0, pad_id=0)
    ours = Bert(cfg, seed=3).to_dtype(np.float64)
    for p in ours.parameters():          # non-trivial LayerNorm and bias values, so copying them is tested
        p.data[...] += 0.1 * rng.standard_normal(p.shape)
    W = {k: torch.tensor(v) for k, v in ours.state_dict().items()}

    class Twin(nnt.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nnt.Embedding(13, 8), nnt.Embedding(7, 8)
            self.ln = nnt.LayerNorm(8)
            # our F.gelu is GPT-2's tanh approximation; torch's "gelu" string is the erf one, so pass tanh's
            self.layers = nnt.ModuleList(
                nnt.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True, norm_first=False,
                                            activation=lambda x: nnt.functional.gelu(x, approximate="tanh"))
                for _ in range(2))
            self.dense, self.mlm_ln = nnt.Linear(8, 8), nnt.LayerNorm(8)
            self.bias = nnt.Parameter(torch.zeros(13))

        def forward(self, idx, pad):
            x = self.ln(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
            h = self.mlm_ln(nnt.functional.gelu(self.dense(x), approximate="tanh"))
            return h @ self.wte.weight.T + self.bias

    twin = Twin().double()
    with torch.no_grad():
        twin.wte.weight.copy_(W["embeddings.wte.weight"])
        twin.wpe.weight.copy_(W["embeddings.wpe.weight"])
        twin.ln.weight.copy_(W["embeddings.ln.weight"])
        twin.ln.bias.copy_(W["embeddings.ln.bias"])
        for i, layer in enumerate(twin.layers):
            p = f"encoder.{i}."
            layer.self_attn.in_proj_weight.copy_(torch.cat([W[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
            layer.self_attn.in_proj_bias.copy_(torch.cat([W[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))
            layer.self_attn.out_proj.weight.copy_(W[p + "self_attn.out_proj.weight"])
            layer.self_attn.out_proj.bias.copy_(W[p + "self_attn.out_proj.bias"])
            for theirs, mine in (("linear1", "ff.w_1"), ("linear2", "ff.w_2"), ("norm1", "sub_attn.norm"),
                                 ("norm2", "sub_ff.norm")):
                getattr(layer, theirs).weight.copy_(W[p + mine + ".weight"])
                getattr(layer, theirs).bias.copy_(W[p + mine + ".bias"])
        twin.dense.weight.copy_(W["mlm.dense.weight"])
        twin.dense.bias.copy_(W["mlm.dense.bias"])
        twin.mlm_ln.weight.copy_(W["mlm.ln.weight"])
        twin.mlm_ln.bias.copy_(W["mlm.ln.bias"])
        twin.bias.copy_(W["mlm.bias"])
    twin.train()                          # dropout is 0; train mode keeps torch off its fused inference path
    idx = np.array([[1, 5, 3, 7, 2, 0, 0], [1, 4, 9, 3, 8, 11, 2]])
    tgt = np.full(idx.shape, IGNORE_INDEX)
    tgt[0, 1], tgt[0, 3], tgt[1, 2], tgt[1, 5] = 6, 9, 10, 12
    logits, loss = ours(idx, tgt)
    loss.backward()
    t_logits = twin(torch.tensor(idx), torch.tensor(idx == 0))
    t_loss = nnt.functional.cross_entropy(t_logits.reshape(-1, 13), torch.tensor(tgt.reshape(-1)), ignore_index=-100)
    t_loss.backward()
    b, t = np.nonzero(tgt != IGNORE_INDEX)
    np.testing.assert_allclose(logits.data, t_logits.detach().numpy()[b, t], rtol=1e-10, atol=1e-10)
    assert abs(loss.item() - t_loss.item()) < 1e-10
    grads = dict(ours.named_parameters())
    np.testing.assert_allclose(grads["embeddings.wte.weight"].grad, twin.wte.weight.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(grads["encoder.0.ff.w_1.weight"].grad, twin.layers[0].linear1.weight.grad.numpy(),
                               atol=1e-10)
    np.testing.assert_allclose(grads["encoder.1.self_attn.q_proj.weight"].grad,
                               twin.layers[1].self_attn.in_proj_weight.grad.numpy()[:8], atol=1e-10)
    np.testing.assert_allclose(grads["embeddings.wpe.weight"].grad, twin.wpe.weight.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize("kw, match", [
    (dict(n_layer=0), r"BertConfig\.n_layer must be an int >= 1, got 0"),
    (dict(n_head=2.0), r"BertConfig\.n_head must be an int >= 1, got 2\.0"),
    (dict(d_ff=-1), r"BertConfig\.d_ff must be an int >= 0, got -1"),
    (dict(n_segments=True), r"BertConfig\.n_segments must be an int >= 0, got True"),
])
def test_bert_config_count_fields(kw, match):
    with pytest.raises(ConfigError, match=match):
        BertConfig(**kw)
