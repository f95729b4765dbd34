"""A GPT (nanoGPT-shaped) written on tinytensor: model, data, training, sampling, checkpoints.

    from gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(x, y)            # x, y: [B, T] int arrays
    model.generate(x[:1], 100, temperature=0.8, top_k=40, seed=0)
    model = GPT.from_pretrained("gpt2"); model.save_pretrained("my-gpt2")   # GPT-2 by name or folder

Layout: ``model`` (GPTConfig, GPT, sample_next) stacks the pieces of ``blocks``; ``hf`` converts GPT-2
files; ``hub`` fetches GPT-2 by name; ``data`` finds text, tokenizers, token caches and batches; ``config`` is TrainConfig and presets;
``train`` the loop; ``transformer`` the encoder–decoder (``seq2seq`` its tasks, decoding and training); ``checkpoint`` saving and loading; ``sample`` text generation; ``cli`` and
``commands`` the ``tinygpt`` command line.
"""
import tinytensor as _tt  # noqa: F401  (first: it sets the BLAS/Numba thread policy before NumPy loads)

__version__ = "0.1.0"    # the one place: pyproject.toml reads it (tool.setuptools.dynamic)

from .config import PRESETS, TrainConfig, make_config
from .hf import PretrainedFormatError, save_pretrained
from .model import GPT, GPTConfig, KVCache, load_pretrained
from .transformer import Transformer, TransformerConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "PRESETS", "PretrainedFormatError", "TrainConfig", "Transformer",
           "TransformerConfig", "load_pretrained", "make_config", "save_pretrained", "__version__"]
