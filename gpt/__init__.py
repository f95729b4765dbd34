"""A GPT (nanoGPT-shaped) written on tinytensor."""
