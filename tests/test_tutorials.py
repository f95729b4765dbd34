"""The tutorials in ``docs/tutorials/*.md`` run: every ```python block, in order, as the reader would.

One test per tutorial file. Its ```python blocks run in order in ONE namespace (a later block sees the
names an earlier one defined), in a fresh temporary working directory, so whatever a tutorial writes
(checkpoints, token caches, pictures) lands in pytest's ``tmp_path`` and never in the repository.

Conventions a tutorial follows:

* A block whose info string is ```python no-run is shown but not executed (a command to type, code
  that needs a long run or a download). Blocks in any other language (```text, ```bash) are not run.
* A tutorial that needs a data file names it in an HTML comment, ``<!-- needs: TINYGPT_DATA/the-verdict.txt -->``;
  its test is skipped, with the file named, when ``$TINYGPT_DATA`` is unset or lacks that file.
* A tutorial's own ``Function`` subclass sets its ``name`` after the class body, so it stays out of
  ``tinytensor.ops.REGISTRY`` (the test fails otherwise: a registered op needs a gradcheck case).
* Expected output stands beside the code as a comment, and the code asserts the values it shows.

A failing block fails the test with the tutorial's file name, the block's Markdown line and first line;
the traceback's line numbers are the Markdown file's.
"""
from __future__ import annotations

import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinytensor.ops import REGISTRY

TUTORIALS_DIR = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
TUTORIALS = sorted(p for p in TUTORIALS_DIR.glob("*.md") if p.name != "README.md")

FENCE = re.compile(r"^```(.*)$")
NEEDS = re.compile(r"<!--\s*needs:\s*TINYGPT_DATA/(\S+)\s*-->")


@dataclass
class Block:
    line: int        # 1-based line of the block's first code line in the Markdown file
    code: str
    run: bool

    @property
    def first_line(self) -> str:
        return next((s.strip() for s in self.code.splitlines() if s.strip()), "")


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order (``run`` False for ```python no-run)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info = m.group(1).split()
        start, i = i + 1, i + 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise ValueError(f"the code block opened at line {start} is never closed")
        if info and info[0] == "python":
            blocks.append(Block(start + 1, "\n".join(lines[start:i]) + "\n", "no-run" not in info[1:]))
        i += 1
    return blocks


def test_the_collector_reads_blocks_and_no_run():
    text = "intro\n```python\nx = 1\n```\n```python no-run\nboom()\n```\n```text\nnot code\n```\n```python\ny = x\n```\n"
    blocks = python_blocks(text)
    assert [(b.line, b.first_line, b.run) for b in blocks] == [(3, "x = 1", True), (6, "boom()", False),
                                                                (12, "y = x", True)]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(TUTORIALS_DIR.parent.parent)
    for needed in NEEDS.findall(text):
        data = os.environ.get("TINYGPT_DATA")
        if not data or not (Path(data) / needed).is_file():
            pytest.skip(f"{rel} needs TINYGPT_DATA set to a folder with {needed} "
                        f"({'unset' if not data else f'not in {data}'})")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__tutorial__"}
    blocks = [b for b in python_blocks(text) if b.run]
    assert blocks, f"{rel} has no ```python block to run"
    registered = set(REGISTRY)
    t0 = time.perf_counter()
    for b in blocks:
        # pad with newlines so the traceback's line numbers are the Markdown file's
        code = compile("\n" * (b.line - 1) + b.code, str(rel), "exec")
        failure = None
        try:
            exec(code, namespace)
        except Exception as e:  # noqa: BLE001 - any failure of a block fails its tutorial
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
            failure = f"{rel}: the block at line {b.line} ({b.first_line!r}) raised {type(e).__name__}: {e}\n{tb}"
        if failure is not None:  # outside the except: no "during handling" chain in the report
            pytest.fail(failure, pytrace=False)
    added = set(REGISTRY) - registered
    for name in added:  # a registered op without a gradcheck case would fail tests/test_ops.py
        del REGISTRY[name]
    assert not added, f"{rel} registered ops {sorted(added)}: set a tutorial op's name after its class"
    print(f"{rel}: {len(blocks)} blocks in {time.perf_counter() - t0:.1f} s")
