"""Fine-tuning a GPT for a task: classification (the book's chapter 6) and, beside it, instruction
following (chapter 7). Each kind has a CLI module with ``add_kind(kinds)``; ``KINDS`` lists them, and
``tinygpt finetune <kind>`` is built from that list (see :mod:`gpt.finetune.cli`).
"""
from .classify import (Classifier, ClassifyConfig, ClassifyResult, GPTClassifier, Prediction,
                       finetune_classifier, load_classifier)
from .classify_ensemble import finetune_classifier_ensemble
from .ensemble import EnsembleClassifier, EnsembleResult, load_ensemble
from .instruct import InstructConfig, finetune_instruct, generate_response, stream_response
from .instruct_data import collate, format_entry, load_instruction_data, split_entries
from .spam import book_split, read_spam_tsv, resolve_spam_data

# module path -> it has add_kind(kinds), registering `tinygpt finetune <kind>`
KINDS = [
    "gpt.finetune.cli_classify",
    "gpt.finetune.cli_instruct",
]

__all__ = ["GPTClassifier", "ClassifyConfig", "ClassifyResult", "Classifier", "Prediction",
           "finetune_classifier", "load_classifier", "finetune_classifier_ensemble", "EnsembleClassifier",
           "EnsembleResult", "load_ensemble", "book_split", "read_spam_tsv", "resolve_spam_data",
           "InstructConfig", "finetune_instruct", "generate_response", "stream_response", "collate", "format_entry",
           "load_instruction_data", "split_entries", "KINDS"]
