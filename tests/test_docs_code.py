"""Every Python block in the README and docs/ runs as written.

A page's blocks run in order in one namespace (a later block may use an
earlier one's file, as a reader following the page does), in a fresh
process (a block may register a strategy or a zoo entry) with an empty
working folder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

_RUNNER = """
import sys, traceback
page, blocks = sys.argv[1], eval(sys.stdin.read())
namespace = {"__name__": "__docs__"}
for index, block in enumerate(blocks):
    try:
        exec(compile(block, f"{page}, python block {index + 1}", "exec"), namespace)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
"""


def python_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


def test_the_docs_have_python_blocks_to_run():
    assert sum(len(python_blocks(page)) for page in PAGES) >= 5


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_pages_python_blocks_run(page, tmp_path):
    done = subprocess.run([sys.executable, "-c", _RUNNER, page.name],
                          input=repr(python_blocks(page)), text=True, cwd=tmp_path,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
