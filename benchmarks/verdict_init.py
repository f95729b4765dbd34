"""Question: why does the book's ch. 5 run memorise the-verdict (train 0.57) when a GPT-2-initialised one stalls?

    python -m benchmarks.verdict_init [--variants book gpt2-init gpt2-all] [--threads 1] [--json PATH]

The run in PyTorch (needs the ``bench`` extra), in variants of the model that differ in one choice each:

* ``book``: the book's ``GPTModel`` — PyTorch's default init (``nn.Embedding`` N(0, 1), ``nn.Linear``
  uniform ±1/√fan_in), an untied output layer, no qkv bias but every other bias, AdamW on every parameter.
* ``gpt2-init``: the same model with GPT-2's init (N(0, 0.02), residual projections N(0, 0.02/√(2·layers))).
* ``gpt2-all``: what the ``verdict`` preset did before: GPT-2's init, the output layer tied to the token
  embedding, no biases, weight decay on matrices only.

Data as the book: the text split 90/10 by characters, GPT-2 tokens, windows of 256 with stride 256, shuffled
batches of 2 (drop_last), AdamW lr 4e-4, weight decay 0.1, dropout 0.1, 10 epochs; train and val loss over
(at most) 5 batches in eval mode after each epoch. Needs ``$TINYGPT_DATA/the-verdict.txt`` and GPT-2's vocab.
"""
from __future__ import annotations

import argparse
import math
import os
import time

VARIANTS = ("book", "gpt2-init", "gpt2-all")


def run(variant: str, text: str, tok, epochs: int = 10, seed: int = 123) -> list[dict]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    V, C, L, H, NL = 50257, 768, 256, 12, 12
    book_init, tied, bias = variant == "book", variant == "gpt2-all", variant != "gpt2-all"

    def windows(ids):
        xs = [ids[i:i + L] for i in range(0, len(ids) - L, L)]
        ys = [ids[i + 1:i + L + 1] for i in range(0, len(ids) - L, L)]
        return torch.tensor(xs), torch.tensor(ys)

    split = int(0.9 * len(text))
    xtr, ytr = windows(tok.encode(text[:split]))
    xva, yva = windows(tok.encode(text[split:]))

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(C, 3 * C, bias=False)                      # the book: qkv_bias=False
            self.proj, self.drop = nn.Linear(C, C, bias=bias), nn.Dropout(0.1)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)   # 3 x [B, H, T, D]
            a = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
            a = a.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            return self.drop(self.proj((self.drop(a) @ v).transpose(1, 2).reshape(B, T, C)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.att, self.ln2 = nn.LayerNorm(C, bias=bias), Attn(), nn.LayerNorm(C, bias=bias)
            self.ff = nn.Sequential(nn.Linear(C, 4 * C, bias=bias), nn.GELU(approximate="tanh"),
                                    nn.Linear(4 * C, C, bias=bias), nn.Dropout(0.1))

        def forward(self, x):
            x = x + self.att(self.ln1(x))
            return x + self.ff(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe, self.drop = nn.Embedding(V, C), nn.Embedding(L, C), nn.Dropout(0.1)
            self.blocks = nn.Sequential(*[Block() for _ in range(NL)])
            self.lnf, self.head = nn.LayerNorm(C, bias=bias), nn.Linear(C, V, bias=False)
            if tied:
                self.head.weight = self.wte.weight
            if not book_init:
                for name, p in self.named_parameters():
                    if p.dim() == 2:
                        resid = name.endswith(("proj.weight", "ff.2.weight"))
                        nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * NL) if resid else 0.02)

        def forward(self, idx):
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
            return self.head(self.lnf(self.blocks(x)))

    m = GPT()
    params = list(m.parameters())
    if variant == "gpt2-all":
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=4e-4)
    else:
        opt = torch.optim.AdamW(params, lr=4e-4, weight_decay=0.1)

    def loss(x, y):
        return nn.functional.cross_entropy(m(x).flatten(0, 1), y.flatten())

    def evaluate(x, y, batches=5):
        m.eval()
        with torch.no_grad():
            ls = [loss(x[i:i + 2], y[i:i + 2]).item() for i in range(0, min(len(x), 2 * batches), 2)]
        m.train()
        return sum(ls) / len(ls)

    g, t0, hist = torch.Generator().manual_seed(seed), time.perf_counter(), []
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(xtr), generator=g)
        for b in range(len(xtr) // 2):
            i = perm[2 * b:2 * b + 2]
            opt.zero_grad()
            loss(xtr[i], ytr[i]).backward()
            opt.step()
        rec = {"epoch": epoch, "train_loss": evaluate(xtr, ytr), "val_loss": evaluate(xva, yva),
               "elapsed_s": round(time.perf_counter() - t0, 1)}
        hist.append(rec)
        print(f"{variant:<10} epoch {epoch:>2}: train {rec['train_loss']:.3f}, val {rec['val_loss']:.3f}, "
              f"{rec['elapsed_s']:.0f} s", flush=True)
    return hist


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    from benchmarks._util import machine_info, machine_line, write_json_atomic
    from tokenizer import load_gpt2

    torch.set_num_threads(args.threads)
    data = os.environ.get("TINYGPT_DATA")
    if not data:
        raise SystemExit("set TINYGPT_DATA to the folder with the-verdict.txt and gpt2/ (GPT-2's vocab files)")
    with open(os.path.join(data, "the-verdict.txt"), encoding="utf-8") as f:
        text = f.read()
    tok = load_gpt2()
    results = {v: run(v, text, tok, args.epochs) for v in args.variants}
    print(machine_line())
    if args.json:
        write_json_atomic(args.json, {"question": "the verdict run in PyTorch: the book's init vs GPT-2's",
                                      "threads": args.threads, "results": results, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
