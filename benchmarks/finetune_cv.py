"""Which spam-classifier recipe is best by k-fold cross-validation on the book split's train + val rows?

    TINYTENSOR_NUM_THREADS=1 python -m benchmarks.finetune_cv --recipes eot,noeot --k 4 \
        --json benchmarks/results/finetune_cv.json

The test split is never read here (see :mod:`gpt.finetune.cv`): this module only ranks recipes; the
chosen one is then run once, test split included, by ``benchmarks.finetune_classify --preset``.
Each recipe is a set of :class:`gpt.finetune.classify.ClassifyConfig` fields plus a tokenizer name:
``gpt2`` (GPT-2's BPE, whose ``<|endoftext|>`` is appended with ``end_token``) or ``byte`` (the 256
bytes plus ``<|endoftext|>``; no data involved).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._util import machine_info, machine_line, write_json_atomic
from gpt.finetune import spam
from gpt.finetune.classify import ClassifyConfig
from gpt.finetune.cv import cross_validate
from tokenizer import BPETokenizer

SMALL = dict(n_layer=2, n_head=4, n_embd=64, block_size=128)
# the book-protocol scratch recipe of docs/finetune.md (96.67 % test), then variations
BASE = dict(init_from="scratch", epochs=6, batch_size=16, lr=5e-4, trainable="all", dropout=0.2, sizes=SMALL)
RECIPES = {
    "noeot": dict(BASE, tokenizer="gpt2", keep="last"),
    "eot": dict(BASE, tokenizer="gpt2", keep="last", end_token=True),
    "eot_cos": dict(BASE, tokenizer="gpt2", keep="last", end_token=True, lr=1e-3, lr_schedule="cosine",
                    warmup_steps=20, epochs=8),
    "noeot_cos": dict(BASE, tokenizer="gpt2", keep="last", lr=1e-3, lr_schedule="cosine", warmup_steps=20, epochs=8),
    "eot_cos_d1": dict(BASE, tokenizer="gpt2", keep="last", end_token=True, lr=1e-3, lr_schedule="cosine",
                       warmup_steps=20, epochs=8, dropout=0.1),
    "eot_wd": dict(BASE, tokenizer="gpt2", keep="last", end_token=True, weight_decay=0.5),
    "byte_eot_cos": dict(BASE, tokenizer="byte", keep="last", end_token=True, lr=2e-3, lr_schedule="cosine",
                         warmup_steps=20, epochs=8, dropout=0.1, sizes=dict(SMALL, block_size=512)),
    "eot_cos_128": dict(BASE, tokenizer="gpt2", keep="last", end_token=True, lr=1e-3, lr_schedule="cosine",
                        warmup_steps=20, epochs=8, dropout=0.1, sizes=dict(SMALL, n_embd=128)),
    "eot_cos_4l": dict(BASE, tokenizer="gpt2", keep="last", end_token=True, lr=1e-3, lr_schedule="cosine",
                       warmup_steps=20, epochs=8, dropout=0.1, sizes=dict(SMALL, n_layer=4)),
    "bpe2k_eot_cos": dict(BASE, tokenizer="sms-bpe-2048", keep="last", end_token=True, lr=1e-3,
                          lr_schedule="cosine", warmup_steps=20, epochs=8, dropout=0.1, sizes=dict(SMALL, block_size=256)),
    "bpe1k_eot_cos": dict(BASE, tokenizer="sms-bpe-1024", keep="last", end_token=True, lr=1e-3,
                          lr_schedule="cosine", warmup_steps=20, epochs=8, dropout=0.1, sizes=dict(SMALL, block_size=256)),
    # from an LM pretrained here (--lm_iters > 0: benchmarks.finetune_classify.pretrain, its accuracy preset's
    # mixed corpus: Tiny Shakespeare, the-verdict, instruction texts, the train split's texts; never val/test)
    "lm_all": dict(init_from="lm", epochs=6, batch_size=16, lr=3e-4, trainable="all", dropout=0.1, keep="last",
                   lr_schedule="cosine", warmup_steps=20, end_token="\n"),
    "lm_lora": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                    lr_schedule="cosine", warmup_steps=20, end_token="\n", lora_rank=4, lora_alpha=16.0,
                    lora_targets="c_attn,c_fc"),
    "lm_lora_attn8": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                          lr_schedule="cosine", warmup_steps=20, end_token="\n", lora_rank=8, lora_alpha=16.0,
                          lora_targets="c_attn"),
    "lm_lora_noend": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                          lr_schedule="cosine", warmup_steps=20, lora_rank=4, lora_alpha=16.0,
                          lora_targets="c_attn,c_fc"),
}


def pretrained_lm(work: Path, data, iters: int) -> tuple[str, dict]:
    """An LM from :func:`benchmarks.finetune_classify.pretrain` with the accuracy preset's settings."""
    from benchmarks import finetune_classify as fc
    ns = argparse.Namespace(**{**fc.PRESETS["accuracy"], "lm_iters": iters, "seed": 123,
                                "vocab_size": 1024, "block_size": 128})
    lm, info = fc.pretrain(work, spam.resolve_spam_data(data), ns)
    return str(lm), info


def sms_bpe(folder: Path, rows: list, vocab_size: int) -> str:
    """A BPE of ``vocab_size`` ids (``<|endoftext|>`` the last) learned from the book split's TRAIN texts
    only (in cross-validation some of them are a fold's val texts: unlabelled text, never a test text)."""
    text = "\n".join(r.text for r in spam.book_split(rows)["train"]) + "\n"
    tok = BPETokenizer(pattern="gpt2").train(text, vocab_size=vocab_size, special_tokens=["<|endoftext|>"])
    return str(tok.save(folder / f"sms-bpe-{vocab_size}.json"))


def byte_tokenizer(folder: Path) -> str:
    """The 256 single bytes plus ``<|endoftext|>`` (id 256), saved; returns its path."""
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=257, special_tokens=["<|endoftext|>"])
    return str(tok.save(folder / "byte-eot.json"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--recipes", default="noeot,eot", help=f"comma list of {', '.join(RECIPES)}")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--seeds", default="123")
    ap.add_argument("--json", default=None)
    ap.add_argument("--lm_iters", type=int, default=0, help="pretrain an LM for the init_from=lm recipes")
    args = ap.parse_args(argv)
    rows = spam.read_spam_tsv(spam.resolve_spam_data(args.data))
    info = machine_info()
    print(machine_line(info), flush=True)
    out = {"machine": info, "k": args.k, "seeds": args.seeds, "pool": "book split train + val (1,194 texts); "
           "test never read", "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lm = None
        if args.lm_iters:
            lm, out["pretrain"] = pretrained_lm(work, args.data, args.lm_iters)
        for name in args.recipes.split(","):
            fields = dict(RECIPES[name])
            if fields["init_from"] == "lm":
                if lm is None:
                    raise SystemExit(f"recipe {name} needs --lm_iters N (an LM to start from)")
                fields["init_from"] = lm
            if fields.get("tokenizer") == "byte":
                fields["tokenizer"] = byte_tokenizer(work)
            elif fields.get("tokenizer", "").startswith("sms-bpe-"):
                fields["tokenizer"] = sms_bpe(work, rows, int(fields["tokenizer"].rsplit("-", 1)[1]))
            cfg = ClassifyConfig(out_dir=str(work / name), data=args.data, **fields)
            t0 = time.perf_counter()
            print(f"{name}:", flush=True)
            cv = cross_validate(cfg, args.k, rows, seeds=[int(s) for s in args.seeds.split(",")], say=print)
            wall = time.perf_counter() - t0
            print(f"{name}: mean {100 * cv.mean_accuracy:.2f} % ± {100 * cv.std_accuracy:.2f} "
                  f"({cv.correct}/{cv.n}); per epoch " + " ".join(f"{100 * a:.2f}" for a in cv.epoch_means)
                  + f"; {wall:.0f} s", flush=True)
            out["results"].append({"recipe": name, "fields": RECIPES[name], "mean_accuracy": cv.mean_accuracy,
                                   "std_accuracy": cv.std_accuracy, "correct": cv.correct, "n": cv.n,
                                   "epoch_means": cv.epoch_means, "runs": cv.runs, "wall_s": wall})
            if args.json:
                write_json_atomic(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
