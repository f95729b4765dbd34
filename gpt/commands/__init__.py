"""The GPT sub-commands of ``tinygpt``, one module each: train, sample, eval, plot, demo.

    tinygpt train --preset baby --data input.txt --out_dir out-baby --max_iters=500
    tinygpt sample --out_dir out-baby --prompt "ROMEO:" --max_new_tokens 300 --seed 1
    tinygpt eval --out_dir out-baby
    tinygpt plot --out_dir out-baby          # needs the plot extra (matplotlib)
    tinygpt demo                             # train the baby preset, then sample

A command module has ``add_parser(subparsers)``, which adds its parser and sets ``func=run`` (and
``accepts_overrides=True`` if it takes ``--key=value`` config overrides), and ``run(args) -> exit code``.
:data:`gpt.cli.COMMANDS` lists the modules.
"""
