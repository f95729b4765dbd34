"""Question: does instruction fine-tuning lower the test split's response-token loss on the book's data?

    python -m benchmarks.instruct_small [--data instruction-data.json] [--epochs 1] [--json PATH]

No pretrained GPT-2 weights are needed: the start is a small character-level GPT (the entries'
characters plus ``<|endoftext|>``) written as a tinygpt checkpoint, fine-tuned with
``gpt.finetune.finetune_instruct`` on the 85 % train split; the response-token loss (answers and their
end-of-text only) of the 10 % test split is measured before and after, and a few test answers are
generated. A sanity check of the whole pipeline on the real entries, not a model worth chatting with.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import tinytensor as tt  # before NumPy: the thread policy (tinytensor/threads.py)

from gpt.checkpoint import save_checkpoint
from gpt.finetune.instruct import InstructConfig, finetune_instruct
from gpt.finetune.instruct_data import format_entry, load_instruction_data
from gpt.model import GPT, GPTConfig
from tokenizer import CharTokenizer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(os.environ.get("TINYGPT_DATA", ".")) / "instruction-data.json"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--block_size", type=int, default=512)
    ap.add_argument("--json", default=None, help="write the summary here (atomically)")
    args = ap.parse_args(argv)
    from benchmarks._util import machine_info, machine_line, write_json_atomic
    entries = load_instruction_data(args.data)
    tok = CharTokenizer.from_text("".join("".join(format_entry(e)) for e in entries),
                                  special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(block_size=args.block_size, vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_embd=64),
                seed=1)
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(Path(d) / "start", 0, model, None, tok, {})
        cfg = InstructConfig(init_from=str(Path(d) / "start"), data=args.data, out_dir=str(Path(d) / "ft"),
                             epochs=args.epochs, batch_size=8, learning_rate=1e-3, eval_interval=20,
                             truncate=True, max_new_tokens=80, test_limit=3)
        s = finetune_instruct(cfg, progress=lambda m: print(m, flush=True))
        answers = Path(s["responses_file"]).read_text(encoding="utf-8")
    print(machine_line())
    if args.json:
        s.pop("responses_file")
        write_json_atomic(args.json, {"question": "test response-token loss before/after instruction fine-tuning "
                                                  "of a small char-level GPT", "summary": s,
                                      "answers": answers, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
