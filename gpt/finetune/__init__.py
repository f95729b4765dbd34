"""Fine-tuning a pretrained GPT: instruction following (``instruct``)."""
