"""Rewrite README.md's generated steps table from the steps' declarations.

python tools/gen_readme_steps.py     (tests/test_steps.py checks it is current)
"""

from __future__ import annotations

import re
from pathlib import Path

from tracecorr.correlator.pipeline import architecture_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    text = README.read_text()
    new = re.sub(
        r"(<!-- steps:begin -->\n).*?(<!-- steps:end -->)",
        lambda m: m.group(1) + architecture_markdown() + m.group(2),
        text,
        flags=re.S,
    )
    if new == text and "<!-- steps:begin -->" not in text:
        raise SystemExit("README.md has no <!-- steps:begin --> ... <!-- steps:end --> block")
    README.write_text(new)


if __name__ == "__main__":
    main()
