"""The READMEs' Python examples run as written.

Every ```python block of bindings/python/README.md (and of the root README, should it get one)
runs in a fresh directory, the way a user would try it: a new interpreter, that directory as the
working directory, no EVLOG_* variables, and the example schemas copied to `schemas/` as the
README tells (`cp -r collector/examples/schemas schemas`). A block must exit 0, print no evlog
error, and deliver what it logs (the blocks log to the file sink in `evlog-data/`).

The wheel supports CPython >= 3.10 (abi3-py310) but this machine has only 3.11 and no registry
it reaches ships a 3.10 interpreter, so the examples' syntax is also checked against 3.10's
grammar (`ast.parse(feature_version=(3, 10))` refuses `except*`, PEP 695 generics, etc.).
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
READMES = [ROOT / "bindings" / "python" / "README.md", ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    out = []
    for readme in READMES:
        for i, m in enumerate(BLOCK.finditer(readme.read_text(encoding="utf-8"))):
            out.append(pytest.param(m.group(1), id=f"{readme.relative_to(ROOT)}#{i}"))
    return out


def test_the_python_readme_has_examples():
    assert len(blocks()) >= 1


@pytest.mark.parametrize("code", blocks())
def test_readme_example_parses_as_python_3_10(code):
    ast.parse(code, feature_version=(3, 10))


def test_the_3_10_grammar_check_refuses_newer_syntax():
    # The check above is only worth something if it catches 3.11+ syntax.
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass\n", feature_version=(3, 10))


@pytest.mark.parametrize("code", blocks())
def test_readme_example_runs_as_written(code, tmp_path):
    shutil.copytree(ROOT / "collector" / "examples" / "schemas", tmp_path / "schemas")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "evlog" not in r.stderr, r.stderr
    rows = []
    for f in glob.glob(str(tmp_path / "evlog-data" / "*" / "*.ndjson")):
        with open(f, encoding="utf-8") as fh:
            rows.extend((Path(f).name, json.loads(line)) for line in fh if line.strip())
    assert rows, "the example delivered nothing"
    assert not [row for name, row in rows if name.startswith("_evlog_rejected")], rows
