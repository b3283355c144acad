"""Prints one fenced code block of a README, as written, for the suites that run README examples.

    python3 tests/readme_block.py README.md "Heading text" LANG [N]

The N-th (default 1st) ```LANG block after the first heading line that contains "Heading text".
Exits 1 with a message when there is none, so a README edit that loses the block fails the test
instead of running nothing.
"""

import re
import sys

path, heading, lang = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1
text = open(path, encoding="utf-8").read()
m = re.search(r"^#+ .*" + re.escape(heading) + r".*$", text, re.M)
if not m:
    sys.exit(f"readme_block: no heading containing {heading!r} in {path}")
blocks = re.findall(r"^```" + re.escape(lang) + r"\n(.*?)^```", text[m.end():], re.S | re.M)
if len(blocks) < n:
    sys.exit(f"readme_block: no ```{lang} block #{n} after {heading!r} in {path}")
sys.stdout.write(blocks[n - 1])
