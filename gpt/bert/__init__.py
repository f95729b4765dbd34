"""A BERT-style masked-LM encoder on the tinytensor engine, beside the GPT (see docs/bert.md).

    from gpt.bert import PretrainConfig, pretrain, fill, BertClassifyConfig, finetune_bert_classifier
    res = pretrain(PretrainConfig(data="input.txt", out_dir="out-bert"))
    fill("out-bert", "To be or not to [MASK]")

Modules: ``model`` (BertConfig, Bert, BertClassifier), ``masking`` (special tokens, the 80/10/10 rule),
``io`` (save / load a run), ``pretrain`` (masked-LM training, evaluation, fill), ``classify`` (SMS spam
fine-tuning on [CLS]), ``cli`` (``tinygpt bert ...``).
"""
from .classify import BertClassifyConfig, classify_texts, finetune_bert_classifier, finetune_bert_ensemble
from .io import load_bert, save_bert
from .masking import SPECIAL_TOKENS, SpecialIds, frame, mask_tokens, special_ids, train_tokenizer
from .model import IGNORE_INDEX, Bert, BertClassifier, BertConfig
from .pretrain import PretrainConfig, PretrainResult, evaluate_mlm, fill, pretrain

__all__ = ["Bert", "BertConfig", "BertClassifier", "IGNORE_INDEX", "SPECIAL_TOKENS", "SpecialIds", "frame",
           "mask_tokens", "special_ids", "train_tokenizer", "load_bert", "save_bert", "PretrainConfig",
           "PretrainResult", "pretrain", "evaluate_mlm", "fill", "BertClassifyConfig", "finetune_bert_classifier",
           "finetune_bert_ensemble", "classify_texts"]
