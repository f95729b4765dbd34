"""The PyTorch twin of ``gpt.Transformer``, built from ``torch.nn.TransformerEncoderLayer`` /
``TransformerDecoderLayer`` (``batch_first=True``), for the throughput benchmark and the parity test.

Same architecture: one embedding shared by source and target, scaled by ``sqrt(d_model)``, plus the
sinusoidal positions, dropout; N encoder and N decoder layers (post-LN or ``norm_first``), a final
LayerNorm per stack only with pre-LN (``nn.Transformer`` always adds one; the paper's post-LN has none),
the output projection tied to the embedding. ``copy_from(ours)`` copies our weights in. Needs torch.
"""
from __future__ import annotations

import numpy as np


def build(cfg: dict, seed: int = 0):
    """A ``torch.nn.Module`` for the TransformerConfig fields in ``cfg`` (a dict), in float32 or
    ``cfg["dtype"]``; ``forward(src, tgt_in, targets) -> (logits, loss)``."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    torch.manual_seed(seed)
    C, V, p = cfg["d_model"], cfg["vocab_size"], cfg["dropout"]
    dtype = cfg.get("dtype", torch.float32)
    layer_kw = dict(d_model=C, nhead=cfg["n_head"], dim_feedforward=cfg["d_ff"], dropout=p,
                    activation=cfg.get("activation", "relu"), batch_first=True, norm_first=cfg["norm_first"],
                    dtype=dtype)
    pe = np.zeros((cfg["max_len"], C))
    pos = np.arange(cfg["max_len"])[:, None] / 10000.0 ** (np.arange(0, C, 2) / C)
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos), np.cos(pos[:, : C // 2])

    class TorchTransformer(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(V, C, dtype=dtype)
            tnn.init.normal_(self.embed.weight, 0.0, C ** -0.5)      # as ours (copy_from overwrites it anyway)
            self.register_buffer("pe", torch.tensor(pe, dtype=dtype))
            self.drop = tnn.Dropout(p)
            final = (lambda: tnn.LayerNorm(C, dtype=dtype)) if cfg["norm_first"] else (lambda: None)
            self.encoder = tnn.TransformerEncoder(tnn.TransformerEncoderLayer(**layer_kw), cfg["n_layer"],
                                                  norm=final(), enable_nested_tensor=False)
            self.decoder = tnn.TransformerDecoder(tnn.TransformerDecoderLayer(**layer_kw),
                                                  cfg.get("n_dec_layer") or cfg["n_layer"], norm=final())
            self.pad_id = cfg.get("pad_id", 0)
            self.label_smoothing = cfg.get("label_smoothing", 0.0)

        def embed_tokens(self, ids):
            return self.drop(self.embed(ids) * C ** 0.5 + self.pe[: ids.shape[1]])

        def forward(self, src, tgt_in, targets=None):
            src_pad = src == self.pad_id
            src_pad = src_pad if bool(src_pad.any()) else None
            T = tgt_in.shape[1]
            causal = tnn.Transformer.generate_square_subsequent_mask(T, dtype=dtype)
            memory = self.encoder(self.embed_tokens(src), src_key_padding_mask=src_pad)
            y = self.decoder(self.embed_tokens(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                             memory_key_padding_mask=src_pad)
            logits = TF.linear(y, self.embed.weight)
            if targets is None:
                return logits, None
            loss = TF.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=self.pad_id,
                                    label_smoothing=self.label_smoothing)
            return logits, loss

    return TorchTransformer()


def _attn(m, attr: str) -> dict:
    def get(lin, name):
        return getattr(getattr(lin, name), attr)
    w = {"in_proj_weight": np.concatenate([get(m.q_proj, "weight"), get(m.k_proj, "weight"), get(m.v_proj, "weight")]),
         "out_proj.weight": get(m.out_proj, "weight")}
    if m.q_proj.bias is not None:
        w["in_proj_bias"] = np.concatenate([get(m.q_proj, "bias"), get(m.k_proj, "bias"), get(m.v_proj, "bias")])
        w["out_proj.bias"] = get(m.out_proj, "bias")
    return w


def state_from(ours, attr: str = "data") -> dict[str, np.ndarray]:
    """Our ``gpt.Transformer``'s weights (``attr="grad"``: their gradients) under the twin's parameter names."""
    sd = {"embed.weight": getattr(ours.embed.weight, attr)}

    def linear_norm(prefix, mod, name):
        sd[f"{prefix}.{name}.weight"] = getattr(mod.weight, attr)
        if mod.bias is not None:
            sd[f"{prefix}.{name}.bias"] = getattr(mod.bias, attr)

    for i, layer in enumerate(ours.encoder):
        pre = f"encoder.layers.{i}"
        sd.update({f"{pre}.self_attn.{k}": v for k, v in _attn(layer.self_attn, attr).items()})
        linear_norm(pre, layer.ff.w_1, "linear1"), linear_norm(pre, layer.ff.w_2, "linear2")
        linear_norm(pre, layer.sub_attn.norm, "norm1"), linear_norm(pre, layer.sub_ff.norm, "norm2")
    for i, layer in enumerate(ours.decoder):
        pre = f"decoder.layers.{i}"
        sd.update({f"{pre}.self_attn.{k}": v for k, v in _attn(layer.self_attn, attr).items()})
        sd.update({f"{pre}.multihead_attn.{k}": v for k, v in _attn(layer.cross_attn, attr).items()})
        linear_norm(pre, layer.ff.w_1, "linear1"), linear_norm(pre, layer.ff.w_2, "linear2")
        linear_norm(pre, layer.sub_self.norm, "norm1"), linear_norm(pre, layer.sub_cross.norm, "norm2")
        linear_norm(pre, layer.sub_ff.norm, "norm3")
    if ours.config.norm_first:
        linear_norm("encoder", ours.enc_norm, "norm"), linear_norm("decoder", ours.dec_norm, "norm")
    return sd


def copy_from(twin, ours) -> None:
    """Load our weights into ``twin``: every twin parameter gets one (KeyError otherwise)."""
    import torch
    sd = state_from(ours)
    with torch.no_grad():
        missing = twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in sd.items()}, strict=False)
    missing_keys = [k for k in missing.missing_keys if k != "pe"]       # the positions are a buffer
    if missing_keys or missing.unexpected_keys:
        raise KeyError(f"twin weights: missing {missing_keys}, unexpected {missing.unexpected_keys}")
