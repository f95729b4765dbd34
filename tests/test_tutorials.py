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


def missing_data(text: str) -> str | None:
    """Why a tutorial cannot run here (a ``needs:`` file absent from ``$TINYGPT_DATA``), or None."""
    data = os.environ.get("TINYGPT_DATA")
    for needed in NEEDS.findall(text):
        if not data or not (Path(data) / needed).is_file():
            return f"needs TINYGPT_DATA set to a folder with {needed} ({'unset' if not data else f'not in {data}'})"
    return None


def run_blocks(text: str, name: str) -> str | None:
    """Run the ```python blocks of ``text`` in one namespace; the failure message, or None if all ran."""
    namespace: dict = {"__name__": "__tutorial__"}
    registered = set(REGISTRY)
    try:
        for b in python_blocks(text):
            if not b.run:
                continue
            # pad with newlines so the traceback's line numbers are the Markdown file's
            code = compile("\n" * (b.line - 1) + b.code, name, "exec")
            try:
                exec(code, namespace)
            except Exception as e:  # noqa: BLE001 - any failure of a block fails its tutorial
                tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
                return f"{name}: the block at line {b.line} ({b.first_line!r}) raised {type(e).__name__}: {e}\n{tb}"
    finally:
        added = set(REGISTRY) - registered
        for op in added:  # a registered op without a gradcheck case would fail tests/test_ops.py
            del REGISTRY[op]
    if added:
        return f"{name} registered ops {sorted(added)}: set a tutorial op's name after its class body"
    return None


def test_a_failing_block_names_the_file_and_its_first_line():
    text = "# t\n```python\nx = 1\n```\n\n```python\n# a comment\ny = x / 0\n```\n"
    msg = run_blocks(text, "docs/tutorials/99-broken.md")
    assert msg.startswith("docs/tutorials/99-broken.md: the block at line 7 ('# a comment') raised "
                          "ZeroDivisionError: division by zero")
    assert 'File "docs/tutorials/99-broken.md", line 8' in msg        # the Markdown file's line
    assert run_blocks("```python no-run\n1 / 0\n```\n```python\nz = 2\n```\n", "ok.md") is None


def test_an_op_a_tutorial_registers_fails_it_and_is_removed():
    text = "```python\nfrom tinytensor.autograd import Function\nclass Probe(Function):\n    name = 'tutorial_probe'\n```\n"
    assert "registered ops ['tutorial_probe']" in run_blocks(text, "probe.md")
    assert "tutorial_probe" not in REGISTRY


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(TUTORIALS_DIR.parent.parent)
    reason = missing_data(text)
    if reason:
        pytest.skip(f"{rel} {reason}")
    assert any(b.run for b in python_blocks(text)), f"{rel} has no ```python block to run"
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    failure = run_blocks(text, str(rel))
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    print(f"{rel}: ran in {time.perf_counter() - t0:.1f} s")
