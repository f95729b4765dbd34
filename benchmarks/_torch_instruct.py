"""The PyTorch twin of instruction fine-tuning: the book's collate and training step, in torch.

``collate`` is *Build a Large Language Model (From Scratch)*'s ``custom_collate_fn`` (ch. 7) with its
exercise-7.2 prompt mask, written from its description: append one end-of-text, pad with end-of-text to
the longest entry + 1, shift by one, replace every padding target after the first with ``-100``,
optionally ``-100`` the targets of the instruction tokens, then cut to ``allowed_max_length``. The model
is ``benchmarks/_torch_gpt.py``'s GPT with a tinytensor model's weights copied in; the loss is
``F.cross_entropy`` over the flattened batch (the book's ``calc_loss_batch``). Needs the ``bench`` extra.
"""
from __future__ import annotations


def collate(batch: list[list[int]], pad_token_id: int, instruction_lengths: list[int] | None = None,
            ignore_index: int = -100, allowed_max_length: int | None = None):
    """``(inputs, targets)`` int64 tensors ``[B, L]`` of the token lists in ``batch``."""
    import torch

    longest = max(len(item) + 1 for item in batch)
    inputs, targets = [], []
    for k, item in enumerate(batch):
        padded = list(item) + [pad_token_id] * (longest - len(item))
        x = torch.tensor(padded[:-1])
        y = torch.tensor(padded[1:])
        pads = torch.nonzero(y == pad_token_id).squeeze(1)
        if pads.numel() > 1:
            y[pads[1:]] = ignore_index
        if instruction_lengths is not None:
            y[:instruction_lengths[k] - 1] = ignore_index
        if allowed_max_length is not None:
            x, y = x[:allowed_max_length], y[:allowed_max_length]
        inputs.append(x)
        targets.append(y)
    return torch.stack(inputs), torch.stack(targets)


def twin_of(model, dtype=None):
    """A ``_torch_gpt`` GPT with ``model``'s (a tinytensor GPT's) config and weights."""
    import torch

    from benchmarks._torch_gpt import build
    c = model.config
    cfg = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
               vocab_size=c.vocab_size, dropout=c.dropout, bias=c.bias)
    twin, _ = build(cfg, lr=0.0, betas=(0.9, 0.999), weight_decay=0.0)
    # tinygpt's names -> the twin's: no "transformer." prefix, the MLP's layers sit in the block
    state = {k.removeprefix("transformer.").replace(".mlp.", "."): torch.from_numpy(v.copy())
             for k, v in model.state_dict().items()}
    state["lm_head.weight"] = state["wte.weight"]
    twin.load_state_dict(state, strict=True)
    return twin.to(dtype) if dtype is not None else twin


def adamw(twin, lr: float, betas: tuple[float, float], weight_decay: float):
    """AdamW with decay on the >= 2-D weights only, as ``GPT.configure_optimizers``."""
    import torch
    params = list(twin.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=lr, betas=betas)


def train_step(twin, opt, inputs, targets) -> float:
    """One step of the book's ``train_model_simple``: loss, backward, AdamW step; returns the loss.

    The twin's forward takes ``F.cross_entropy`` of the flattened batch, whose default ``ignore_index``
    is the book's ``-100``.
    """
    opt.zero_grad()
    _, loss = twin(inputs, targets)
    loss.backward()
    opt.step()
    return loss.item()
