#!/usr/bin/env bash
# Remakes the pictures in the README with the project's own commands (needs the plot extra, and Graphviz's
# dot for the graph). A short baby run: 1,500 iterations with health records every 50.
set -euo pipefail
cd "$(dirname "$0")"
out="$(mktemp -d)"
tinygpt train --preset baby --out_dir "$out" --max_iters=1500 --eval_interval=250 --health_interval=50 --no_progress
tinygpt plot --out_dir "$out" --output loss.png              # also writes health.png beside it
tinygpt attention --out_dir "$out" --prompt "ROMEO: What light" --layer 3 --output attention.png
tinygpt graph --preset baby --block 0 --highlight transformer.h.0.attn.c_attn.weight --out graph.png
rm -rf "$out"
