"""Question: how fast is our pure-Python BPE against tiktoken (encoding) and HF ``tokenizers`` (training)?

    python -m benchmarks.tokenizer [--rounds 5] [--json PATH]

Needs ``$TINYGPT_DATA`` with ``tinyshakespeare.txt`` and ``gpt2/{encoder.json,vocab.bpe}``, and the
``bench`` extra (tiktoken, tokenizers).

Encoding: MB/s of UTF-8 input on Tiny Shakespeare (1.1 MB), ours against ``tiktoken.Encoding`` built from
the *same* ranks and pattern (GPT-2's files, and the 4096-token vocabulary we train here), both through
``encode_ordinary``, one thread. Ours is timed twice per round: "cold" is a fresh chunk cache (what the
first encode of a text costs), "warm" encodes the same text again (every chunk a cache hit). Both
outputs are checked to be identical to tiktoken's. "Cold, one by one" is a cold encode with the batched
merge switched off (``tokenizer.bpe._BATCH_MIN`` out of reach): each missing chunk merged by its own
Python call, as before the batch existed; it is timed in the same rounds, for a side-by-side A/B. Also timed: one 1,000,000-letter word.
"Fresh process" (GPT-2 only): per round, one new Python process for each side that imports, loads
GPT-2's ``encoder.json`` + ``vocab.bpe`` (tiktoken with its own ``data_gym_to_mergeable_bpe_ranks``) and
encodes Tiny Shakespeare once: the first encode alone, and load + encode.

Training: seconds to train vocab 512 and 4096 with the GPT-4 (cl100k) split pattern on Tiny Shakespeare.
HF gets the same regex (``Split(..., "isolated")`` then ``ByteLevel``), the byte alphabet, and the text in
blocks of 1,000 lines so its Rayon threads can share the pre-tokenization (2 cores here); ours is one
thread. Rounds alternate between the contenders so machine noise hits both; the figures are medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._util import machine_info
from tinytensor.fileio import atomic_write_text
import tokenizer.bpe as bpe
from tokenizer import GPT4_PATTERN, BPETokenizer, load_gpt2

TARGET_ENCODE_RATIO = 0.5  # ours / tiktoken MB/s, at least
TARGET_TRAIN_RATIO = 3.0  # ours / HF seconds, at most


def _data_dir() -> Path:
    env = os.environ.get("TINYGPT_DATA")
    if not env:
        raise SystemExit("benchmarks.tokenizer: set TINYGPT_DATA to the folder with tinyshakespeare.txt and gpt2/")
    folder = Path(env)
    for name in ("tinyshakespeare.txt", "gpt2/encoder.json", "gpt2/vocab.bpe"):
        if not (folder / name).is_file():
            raise SystemExit(f"benchmarks.tokenizer: {folder / name} is missing")
    return folder


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _encode_unbatched(ours: BPETokenizer, text: str) -> list[int]:
    """``ours.encode_ordinary(text)`` with the batched merge off: every missing chunk by its own call."""
    saved = bpe._BATCH_MIN
    bpe._BATCH_MIN = sys.maxsize
    try:
        return ours.encode_ordinary(text)
    finally:
        bpe._BATCH_MIN = saved


def bench_encode(name: str, ours: BPETokenizer, text: str, rounds: int) -> dict:
    """Median seconds of ours (cold, warm, cold one by one) and tiktoken on ``text``; checks the ids agree."""
    enc = ours.to_tiktoken(name)
    n_bytes = len(text.encode("utf-8"))
    cold, warm, tik, unbatched = [], [], [], []
    for _ in range(rounds):
        ours.clear_cache()
        t, ids = _timed(lambda: ours.encode_ordinary(text))
        cold.append(t)
        t, ids_warm = _timed(lambda: ours.encode_ordinary(text))
        warm.append(t)
        t, ref = _timed(lambda: enc.encode_ordinary(text))
        tik.append(t)
        ours.clear_cache()
        t, ids_unbatched = _timed(lambda: _encode_unbatched(ours, text))
        unbatched.append(t)
        if ids != ref or ids_warm != ref or ids_unbatched != ref:
            raise SystemExit(f"benchmarks.tokenizer: {name}: our ids differ from tiktoken's")
    med = statistics.median
    row = {
        "name": name,
        "bytes": n_bytes,
        "tokens": len(ref),
        "ours_cold_s": med(cold),
        "ours_warm_s": med(warm),
        "ours_cold_unbatched_s": med(unbatched),
        "tiktoken_s": med(tik),
        "ours_cold_best_s": min(cold),
        "ours_warm_best_s": min(warm),
        "tiktoken_best_s": min(tik),
    }
    for key in ("ours_cold", "ours_warm", "ours_cold_unbatched", "tiktoken"):
        row[f"{key}_mb_s"] = n_bytes / row[f"{key}_s"] / 1e6
    row["ratio_cold"] = row["ours_cold_mb_s"] / row["tiktoken_mb_s"]
    row["ratio_warm"] = row["ours_warm_mb_s"] / row["tiktoken_mb_s"]
    row["ratio_cold_unbatched"] = row["ours_cold_unbatched_mb_s"] / row["tiktoken_mb_s"]
    return row


def _fresh_child(which: str, data: Path) -> dict:
    """In this (fresh) process: load GPT-2's files with ``which`` (ours or tiktoken's own loader), encode."""
    t0 = time.perf_counter()
    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    if which == "ours":
        tok = load_gpt2(data / "gpt2" / "encoder.json", data / "gpt2" / "vocab.bpe")
        encode = tok.encode_ordinary
    else:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks

        from tokenizer import GPT2_PATTERN
        ranks = data_gym_to_mergeable_bpe_ranks(str(data / "gpt2" / "vocab.bpe"), str(data / "gpt2" / "encoder.json"))
        encode = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                   special_tokens={"<|endoftext|>": 50256}).encode_ordinary
    t1 = time.perf_counter()
    ids = encode(text)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "encode_s": t2 - t1, "total_s": t2 - t0, "tokens": len(ids), "ids_head": ids[:64],
            "ids_hash": hash(tuple(ids))}


def bench_fresh_process(data: Path, rounds: int) -> dict:
    """GPT-2 on Tiny Shakespeare, each side in a fresh process per round (interleaved): the seconds to load
    GPT-2's ``encoder.json`` + ``vocab.bpe`` (and import), and of the first encode; ids checked identical."""
    runs: dict[str, list[dict]] = {"ours": [], "tiktoken": []}
    root = Path(__file__).resolve().parents[1]
    run = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
    for _ in range(rounds):
        for which in runs:
            env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": "0"}
            out = subprocess.run([sys.executable, "-c", run, __file__, "--fresh-child", which], env=env,
                                 capture_output=True, text=True, check=True)
            runs[which].append(json.loads(out.stdout.strip().splitlines()[-1]))
    if len({(r["tokens"], r["ids_hash"]) for rs in runs.values() for r in rs}) != 1:
        raise SystemExit("benchmarks.tokenizer: fresh-process ids differ between ours and tiktoken")
    med = statistics.median
    row = {k + "_" + w: med(r[k] for r in runs[w]) for w in runs for k in ("load_s", "encode_s", "total_s")}
    row["ratio_encode"] = row["encode_s_tiktoken"] / row["encode_s_ours"]
    row["ratio_total"] = row["total_s_tiktoken"] / row["total_s_ours"]
    for rs in runs.values():
        for r in rs:
            del r["ids_head"], r["ids_hash"]
    return {"rounds": rounds, **row, "runs": runs}


def bench_huge_word(ours: BPETokenizer, n: int = 1_000_000) -> dict:
    """One n-letter chunk (no spaces): ours (heap merge) against tiktoken."""
    import random

    rng = random.Random(0)
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    enc = ours.to_tiktoken("huge")
    t_ours, ids = _timed(lambda: ours.encode_ordinary(word))
    t_tik, ref = _timed(lambda: enc.encode_ordinary(word))
    if ids != ref:
        raise SystemExit("benchmarks.tokenizer: huge word: our ids differ from tiktoken's")
    return {"chars": n, "ours_s": t_ours, "tiktoken_s": t_tik}


def _hf_train(text_blocks: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(text_blocks, trainer)
    return tok


def bench_train(text: str, vocab_size: int, rounds: int) -> tuple[dict, BPETokenizer]:
    lines = text.splitlines(keepends=True)
    blocks = ["".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    ours_s, hf_s = [], []
    ours = hf = None
    for _ in range(rounds):
        t, ours = _timed(lambda: BPETokenizer("gpt4").train(text, vocab_size, progress=False))
        ours_s.append(t)
        t, hf = _timed(lambda: _hf_train(blocks, vocab_size))
        hf_s.append(t)
    med = statistics.median
    row = {
        "vocab_size": vocab_size,
        "ours_s": med(ours_s),
        "hf_s": med(hf_s),
        "ours_best_s": min(ours_s),
        "hf_best_s": min(hf_s),
        "ours_vocab": ours.vocab_size,
        "hf_vocab": hf.get_vocab_size(),
        # same vocabulary size, so token counts on the training text compare the merges' quality
        "ours_tokens": len(ours.encode_ordinary(text)),
        "hf_tokens": sum(len(hf.encode(b).ids) for b in blocks),
    }
    row["ratio"] = row["ours_s"] / row["hf_s"]
    return row, ours


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _table(result: dict) -> str:
    lines = [
        "Encoding Tiny Shakespeare (MB/s, median; ids identical to tiktoken's)",
        f"{'ranks':<22}{'ours cold':>11}{'ours warm':>11}{'tiktoken':>10}{'cold/tik':>10}{'warm/tik':>10}",
    ]
    for r in result["encode"]:
        lines.append(
            f"{r['name']:<22}{r['ours_cold_mb_s']:>11.2f}{r['ours_warm_mb_s']:>11.2f}{r['tiktoken_mb_s']:>10.2f}"
            f"{r['ratio_cold']:>9.2f}x{r['ratio_warm']:>9.2f}x"
        )
        lines.append(f"{'':<22}cold, one by one (batched merge off): {r['ours_cold_unbatched_mb_s']:.2f} MB/s, "
                     f"{r['ratio_cold_unbatched']:.2f}x tiktoken; batched / one by one "
                     f"{r['ours_cold_unbatched_s'] / r['ours_cold_s']:.2f}x")
    f = result["fresh_process"]
    lines.append(f"fresh process (GPT-2, median of {f['rounds']}): load {f['load_s_ours']:.2f} s vs tiktoken "
                 f"{f['load_s_tiktoken']:.2f} s, first encode {f['encode_s_ours']:.2f} vs {f['encode_s_tiktoken']:.2f} "
                 f"s: encode {f['ratio_encode']:.2f}x, load + encode {f['ratio_total']:.2f}x")
    h = result["huge_word"]
    if h is not None:
        lines.append(f"one {h['chars']:,}-letter word: ours {h['ours_s']:.2f} s, tiktoken {h['tiktoken_s']:.2f} s")
    lines += [
        "",
        "Training on Tiny Shakespeare, GPT-4 split (seconds, median)",
        f"{'vocab':<8}{'ours':>8}{'HF':>8}{'ours/HF':>9}{'tokens ours':>13}{'tokens HF':>11}",
    ]
    for r in result["train"]:
        lines.append(
            f"{r['vocab_size']:<8}{r['ours_s']:>8.2f}{r['hf_s']:>8.2f}{r['ratio']:>8.2f}x"
            f"{r['ours_tokens']:>13,}{r['hf_tokens']:>11,}"
        )
    lines.append("")
    lines.append(f"target: encode >= {TARGET_ENCODE_RATIO}x tiktoken")
    for r in result["encode"]:
        verdicts = [
            f"{k} {r[f'ratio_{k}']:.2f}x {_met(r[f'ratio_{k}'] >= TARGET_ENCODE_RATIO)}" for k in ("cold", "warm")
        ]
        lines.append(f"  {r['name']}: " + ", ".join(verdicts))
    lines.append(f"target: training <= {TARGET_TRAIN_RATIO}x HF")
    for r in result["train"]:
        lines.append(f"  vocab {r['vocab_size']}: {r['ratio']:.2f}x {_met(r['ratio'] <= TARGET_TRAIN_RATIO)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per measurement (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    parser.add_argument("--encode-only", action="store_true",
                        help="only the GPT-2 encoding row (no training, no 4096-token row, no huge word)")
    parser.add_argument("--fresh-child", choices=["ours", "tiktoken"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fresh_child:
        print(json.dumps(_fresh_child(args.fresh_child, _data_dir())))
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    import tiktoken
    import tokenizers

    data = _data_dir()
    text = (data / "tinyshakespeare.txt").read_text(encoding="utf-8")
    gpt2 = load_gpt2(data / "gpt2" / "encoder.json", data / "gpt2" / "vocab.bpe")

    train_rows = []
    trained = None
    for vocab_size in () if args.encode_only else (512, 4096):
        row, tok = bench_train(text, vocab_size, max(1, min(args.rounds, 3)))
        train_rows.append(row)
        trained = tok
        print(f"trained {vocab_size}: ours {row['ours_s']:.2f} s, HF {row['hf_s']:.2f} s", file=sys.stderr)
    encode_rows = [bench_encode("GPT-2 (50257)", gpt2, text, args.rounds)]
    if trained is not None:
        encode_rows.append(bench_encode("ours, gpt4 split (4096)", trained, text, args.rounds))
    result = {
        "question": "pure-Python BPE vs tiktoken (encode) and HF tokenizers (train) on Tiny Shakespeare",
        "machine": {
            **machine_info(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "tiktoken": tiktoken.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "rounds": args.rounds,
        "encode": encode_rows,
        "huge_word": None if args.encode_only else bench_huge_word(gpt2),
        "fresh_process": bench_fresh_process(data, args.rounds),
        "train": train_rows,
        "targets": {"encode_ratio_min": TARGET_ENCODE_RATIO, "train_ratio_max": TARGET_TRAIN_RATIO},
    }
    print(_table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
