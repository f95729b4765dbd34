"""The PyTorch twin of ``gpt.GPT`` (nanoGPT's model.py, eager mode), for the benchmarks that compare against it.

Same architecture: token + position embeddings, pre-LN blocks (attention with ``c_attn``/``c_proj``, MLP with
``c_fc``/``c_proj`` and tanh GELU), ``ln_f``, ``lm_head`` tied to ``wte``; GPT-2 init (normal 0.02, residual
projections 0.02/sqrt(2 n_layer)); AdamW with weight decay on the >= 2-D weights only. Needs the ``bench`` extra.
"""
from __future__ import annotations

import math


def build(cfg: dict, lr: float, betas: tuple[float, float], weight_decay: float, seed: int = 1337):
    """``(model, optimizer)`` for ``cfg`` (n_layer, n_head, n_embd, block_size, vocab_size, dropout, bias)."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    torch.manual_seed(seed)
    C, H, L, V = cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["vocab_size"]
    p_drop, bias = cfg["dropout"], cfg["bias"]

    class Attn(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = tnn.Linear(C, 3 * C, bias=bias)
            self.c_proj = tnn.Linear(C, C, bias=bias)
            self.drop = tnn.Dropout(p_drop)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, dropout_p=p_drop if self.training else 0.0, is_causal=True)
            return self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = tnn.LayerNorm(C, bias=bias), tnn.LayerNorm(C, bias=bias)
            self.attn = Attn()
            self.c_fc, self.c_proj = tnn.Linear(C, 4 * C, bias=bias), tnn.Linear(4 * C, C, bias=bias)
            self.drop = tnn.Dropout(p_drop)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.drop(self.c_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))

    class GPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = tnn.Embedding(V, C), tnn.Embedding(cfg["block_size"], C)
            self.drop = tnn.Dropout(p_drop)
            self.h = tnn.ModuleList(Block() for _ in range(L))
            self.ln_f = tnn.LayerNorm(C, bias=bias)
            self.lm_head = tnn.Linear(C, V, bias=False)
            self.lm_head.weight = self.wte.weight
            for n, p in self.named_parameters():
                if p.dim() >= 2:
                    tnn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") else 0.02)
                elif n.endswith(".bias"):
                    tnn.init.zeros_(p)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
            for b in self.h:
                x = b(x)
            logits = self.lm_head(self.ln_f(x))
            return logits, TF.cross_entropy(logits.view(-1, V), targets.view(-1))

    model = GPT().train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)
    return model, opt
