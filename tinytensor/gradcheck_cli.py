"""``tinygpt gradcheck``: run the float64 gradient check of each op and print a table."""
from __future__ import annotations

import argparse
import time

from . import backend
from .errors import UsageError
from .gradcheck import example_cases, gradcheck


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gradcheck", help="check every op's backward against finite differences (float64)",
                       description="Run tt.gradcheck on one example per differentiable op and print a table.")
    p.add_argument("--op", action="append", metavar="NAME", help="check only this op (repeatable)")
    p.add_argument("--all", action="store_true", help="check every registered op (the default)")
    p.add_argument("--backend", choices=["numpy", "numba", "auto"], default=None,
                   help="kernel backend to check (default: the current one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cases = example_cases()
    names = sorted(cases) if (args.all or not args.op) else args.op
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise UsageError(f"unknown op(s) {unknown}; known: {', '.join(sorted(cases))}")
    ctx = backend.set_backend(args.backend) if args.backend else backend.set_backend(backend.get_backend())
    failed = 0
    t0 = time.perf_counter()
    with ctx:
        print(f"float64 gradient checks, backend {backend.get_backend()!r}, eps=1e-6, atol=1e-5, rtol=1e-3")
        print(f"{'op':<15}{'input shapes':<32}{'mode':<11}{'max abs err':>12}{'max rel err':>12}  result")
        for name in names:
            fn, inputs = cases[name]
            res = gradcheck(fn, inputs, name=name, raise_exception=False)
            shapes = ", ".join("x".join(map(str, s)) or "()" for s in res.shapes)
            print(f"{name:<15}{shapes:<32}{res.mode:<11}{res.max_abs_err:>12.2e}{res.max_rel_err:>12.2e}  "
                  f"{'pass' if res.passed else 'FAIL'}")
            for msg in res.failures:
                print("    " + msg)
            failed += not res.passed
    print(f"{len(names) - failed}/{len(names)} ops pass ({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0
