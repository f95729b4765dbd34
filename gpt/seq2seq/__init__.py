"""Sequence-to-sequence with the encoder–decoder :class:`gpt.transformer.Transformer`: tasks, decoding,
training, checkpoints (``tinygpt seq2seq train`` / ``translate``).

    from gpt.seq2seq import TrainSettings, load_seq2seq, train, translate
    train(TrainSettings(task="dates", out_dir="out-dates"))
    model, vocab, _ = load_seq2seq("out-dates")
    translate(model, vocab, ["3rd of November 1999"], beam=4)      # ['1999-11-03']
"""
from .checkpoint import load_seq2seq, save_seq2seq
from .decode import Hypothesis, beam_search, greedy, length_penalty
from .tasks import TASKS, CharVocab, get_task
from .train import TrainSettings, collate, exact_match, train, translate

__all__ = ["CharVocab", "Hypothesis", "TASKS", "TrainSettings", "beam_search", "collate", "exact_match", "get_task",
           "greedy", "length_penalty", "load_seq2seq", "save_seq2seq", "train", "translate"]
