"""README.md stays short and its runnable blocks keep running (issue 24, requirement 1).

A fenced block whose info string is ``python run`` or ``bash run`` is run as a user pastes it:
python blocks by the interpreter of this test run, bash blocks with ``bash -e`` (so any failing
line fails the block), each in a subprocess with a timeout, in a temporary working directory (a
block that writes ``runs/`` leaves nothing in the repository), offline, with the caller's
``MEM1_GYM_CACHE`` so the cached world and index are reused. Only cheap offline blocks are marked
``run``; the two install commands are not (CI runs them itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_LINES = 250
BLOCK_TIMEOUT_S = 120  # generous for a loaded 2-core machine; each block takes seconds when idle
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block whose info string carries the ``run`` flag."""
    return [(lang, code) for lang, flags, code in FENCE.findall(text) if "run" in flags.split()]


BLOCKS = runnable_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_at_most_250_lines():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move details to docs/ (limit {MAX_LINES})"


def test_readme_marks_python_and_bash_blocks_runnable():
    assert {lang for lang, _ in BLOCKS} == {"python", "bash"}, [lang for lang, _ in BLOCKS]
    # The first code block of the README is the quickstart: it must be runnable as pasted.
    first = FENCE.search(README.read_text(encoding="utf-8"))
    assert first is not None and "run" not in first.group(2).split()  # the install commands
    assert BLOCKS[0][0] == "python" and "def policy" in BLOCKS[0][1]


def test_the_extractor_reads_run_flags_only():
    text = "```python run\nprint(1)\n```\n```python\nprint(2)\n```\n```bash run\necho 3\n```\n"
    assert runnable_blocks(text) == [("python", "print(1)\n"), ("bash", "echo 3\n")]


@pytest.mark.parametrize("lang, code", BLOCKS, ids=[f"{lang}-{i}" for i, (lang, _) in enumerate(BLOCKS)])
def test_readme_block_runs(lang, code, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SE_OFFLINE": "true", "SE_AVOID_STATS": "true"}
    command = [sys.executable, "-c", code] if lang == "python" else ["bash", "-e", "-c", code]
    if lang == "bash":  # console scripts of this interpreter's environment come first on PATH
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"README {lang} block failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
