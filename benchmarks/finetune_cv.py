"""Which spam-classifier recipe is best by k-fold cross-validation on the book split's train + val rows?

    TINYTENSOR_NUM_THREADS=1 python -m benchmarks.finetune_cv --recipes eot,noeot --k 4 \
        --json benchmarks/results/finetune_cv.json

The test split is never read here (see :mod:`gpt.finetune.cv`): this module only ranks recipes; the
chosen one is then run once, test split included, by ``benchmarks.finetune_classify --preset``.
With ``--members 1,2,...,M --sizes 1,3,5`` each recipe is scored as seed ensembles
(:func:`gpt.finetune.cv.cross_validate_ensemble`): every fold trains the M members once, and each size n
is the mean over folds and disjoint groups of n members of the averaged probabilities' accuracy.

    TINYTENSOR_NUM_THREADS=1 python -m benchmarks.finetune_cv --recipes eot_cos --k 4 \
        --members 1,2,3,4,5,6,7,8,9,10 --sizes 1,3,5,10 --json benchmarks/results/finetune_ensemble_cv.json

Each recipe is a set of :class:`gpt.finetune.classify.ClassifyConfig` fields plus a tokenizer name:
``gpt2`` (GPT-2's BPE, whose ``<|endoftext|>`` is appended with ``end_token``) or ``byte`` (the 256
bytes plus ``<|endoftext|>``; no data involved).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from benchmarks._util import machine_info, machine_line, write_json_atomic
from gpt.finetune import spam
from gpt.finetune.classify import ClassifyConfig
from gpt.finetune.cv import cross_validate, cross_validate_ensemble
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
    # issue 15, within the 2 % budget of the 3 x 128 LM (756,610 parameters with r4 on c_attn, c_fc): the
    # LayerNorm gains too (14,978 trainable, 1.98 %); or r2 on every Linear + gains and biases (14,338, 1.90 %)
    "lm_lora_lnw": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                        lr_schedule="cosine", warmup_steps=20, end_token="\n", lora_rank=4, lora_alpha=16.0,
                        lora_targets="c_attn,c_fc", lora_norms="weight"),
    "lm_lora_r2all_ln": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                             lr_schedule="cosine", warmup_steps=20, end_token="\n", lora_rank=2, lora_alpha=8.0,
                             lora_targets="c_attn,c_proj,c_fc", lora_norms="all"),
    # session 12 (issue 15): the LM of benchmarks.finetune_classify's cv_lm_gpt2 preset (GPT-2 BPE, 2 x 64, the
    # train texts x 3, 500 iterations; "lm" names the preset), LoRA r 8 on every Linear + head (0.5 % trainable)
    "lm2_lora": dict(init_from="lm", lm="cv_lm_gpt2", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                     lr_schedule="cosine", warmup_steps=20, end_token="\n", lora_rank=8, lora_alpha=16.0,
                     lora_targets="c_attn,c_proj,c_fc"),
    "lm_lora_noend": dict(init_from="lm", epochs=12, batch_size=16, lr=3e-3, dropout=0.1, keep="last",
                          lr_schedule="cosine", warmup_steps=20, lora_rank=4, lora_alpha=16.0,
                          lora_targets="c_attn,c_fc"),
}
# the lm_lora recipe above on per-fold LMs of the cv_lm preset (--fold_lms): its CV without the shared LM's leak
RECIPES["lm_lora_foldlm"] = {**RECIPES["lm_lora"], "lm": "cv_lm"}
# session 15 (issues 15, 17): the same on LMs that also read the SMS texts outside the book's balanced dataset
# (unlabelled, 4,080 ham messages less the copies of each fold's held-out texts; preset cv_lm_unlabelled)
RECIPES["lm_lora_unlabelled"] = {**RECIPES["lm_lora"], "lm": "cv_lm_unlabelled"}


LM_INFO = "lm-info.json"


def lm_args(preset: str, **over) -> argparse.Namespace:
    """The pretraining arguments of ``benchmarks.finetune_classify``'s ``preset`` (a BPE of 1,024 ids, block 128
    and seed 123 unless the preset says otherwise), with ``over`` on top."""
    from benchmarks import finetune_classify as fc
    return argparse.Namespace(**{"vocab_size": 1024, "block_size": 128, "seed": 123, **fc.PRESETS[preset], **over})


def pretrained_lm(work: Path, data, iters: int) -> tuple[str, dict]:
    """An LM from :func:`benchmarks.finetune_classify.pretrain` with the accuracy preset's settings (its
    figures, wall time included, are kept in ``work/lm-info.json``; an LM already in ``work`` with the same
    iterations is reused, its recorded time still counting for the runs that start from it)."""
    from benchmarks import finetune_classify as fc
    if (work / LM_INFO).is_file():
        info = json.loads((work / LM_INFO).read_text(encoding="utf-8"))
        if info.get("iters") == iters and (work / "lm").is_dir():
            print(f"reusing the LM in {work / 'lm'} (pretrained in {info['wall_s']:.0f} s)", flush=True)
            return str(work / "lm"), {**info, "reused": str(work / "lm")}
    lm, info = fc.pretrain(work, spam.resolve_spam_data(data), lm_args("accuracy", lm_iters=iters))
    write_json_atomic(work / LM_INFO, info)
    return str(lm), info


class FoldLMs:
    """``fold_cfg`` for :func:`gpt.finetune.cv.cross_validate_ensemble`: each fold's config starts from an LM
    pretrained (``benchmarks.finetune_classify``'s ``preset``) on that fold's TRAIN rows only, so the fold's
    val texts reach neither its tokenizer nor its LM (``work/fold-lm-F``; its figures, time included, are in
    ``LM_INFO`` there and in ``self.infos[F]``)."""

    def __init__(self, work: Path, data, preset: str):
        self.work, self.data, self.preset = work, data, preset
        self.infos: dict[int, dict] = {}

    def __call__(self, f: int, fold: dict, cfg: ClassifyConfig) -> ClassifyConfig:
        from benchmarks import finetune_classify as fc
        folder = self.work / f"fold-lm-{f}"
        if (folder / LM_INFO).is_file() and (folder / "lm").is_dir():
            print(f"  fold {f}: reusing the LM in {folder / 'lm'}", flush=True)
            info = json.loads((folder / LM_INFO).read_text(encoding="utf-8"))
        else:
            _, info = fc.pretrain(folder, spam.resolve_spam_data(self.data), lm_args(self.preset),
                                  train_rows=fold["train"])
            write_json_atomic(folder / LM_INFO, info)
        self.infos[f] = info
        return dataclasses.replace(cfg, init_from=str(folder / "lm"))


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
    ap.add_argument("--members", default=None, help="seed ensembles: the member seeds trained on each fold (1,2,3)")
    ap.add_argument("--sizes", default="1,3,5", help="with --members: the ensemble sizes scored")
    ap.add_argument("--fold_lms", action="store_true",
                    help="with --members: one LM per fold, pretrained on that fold's train rows only (recipes with an lm preset)")
    ap.add_argument("--work", default=None, help="keep the runs (and the LM) in this folder (default: a temporary one)")
    args = ap.parse_args(argv)
    rows = spam.read_spam_tsv(spam.resolve_spam_data(args.data))
    info = machine_info()
    print(machine_line(info), flush=True)
    out = {"machine": info, "k": args.k, "seeds": args.seeds, "pool": "book split train + val (1,194 texts); "
           "test never read", "results": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        lm = None
        if args.lm_iters:
            lm, out["pretrain"] = pretrained_lm(work, args.data, args.lm_iters)
        for name in args.recipes.split(","):
            fields = dict(RECIPES[name])
            lm_preset = fields.pop("lm", None)
            fold_cfg = None
            if fields["init_from"] == "lm" and args.fold_lms:
                if not (args.members and lm_preset):
                    raise SystemExit(f"--fold_lms needs --members and a recipe with an lm preset, not {name}")
                fold_cfg = FoldLMs(work / f"{name}-lms", args.data, lm_preset)
                fields["init_from"] = "fold-lm"          # replaced fold by fold
            elif fields["init_from"] == "lm":
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
            if args.members:
                out["results"].append(ensemble_cv(name, cfg, args, rows, out.get("pretrain"), fold_cfg))
                if fold_cfg is not None:
                    out["results"][-1]["fold_lms"] = [fold_cfg.infos[f] for f in sorted(fold_cfg.infos)]
                if args.json:
                    write_json_atomic(args.json, out)
                continue
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


def ensemble_cv(name: str, cfg: ClassifyConfig, args, rows: list, pretrain: dict | None, fold_cfg=None) -> dict:
    """One recipe's seed-ensemble CV (``--members``, ``--sizes``), printed; its JSON record."""
    sizes = [int(n) for n in args.sizes.split(",")]
    t0 = time.perf_counter()
    cv = cross_validate_ensemble(cfg, args.k, rows, member_seeds=args.members, sizes=sizes, say=print,
                                 fold_cfg=fold_cfg)
    wall = time.perf_counter() - t0
    member_s = [m["train_seconds"] for m in cv.members]
    for n in sizes:
        d = cv.sizes[n]
        print(f"{name}, ensemble of {n}: mean {100 * d['mean_accuracy']:.2f} % ± {100 * d['std_accuracy']:.2f} "
              f"over {len(d['runs'])} (fold, group) runs ({d['correct']}/{d['n']})", flush=True)
    print(f"{name}: {wall:.0f} s; member training {sum(member_s) / len(member_s):.1f} s each on a fold", flush=True)
    return {"recipe": name, "fields": RECIPES[name], "members": args.members, "sizes": cv.sizes,
            "member_runs": cv.members, "fold_wall_s": cv.fold_seconds, "wall_s": wall,
            "pretrain_wall_s": (pretrain or {}).get("wall_s", 0.0) if cfg.init_from != "scratch" else 0.0}


if __name__ == "__main__":
    raise SystemExit(main())
