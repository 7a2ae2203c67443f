"""Counts per command of the command line's numeric edges: every numeric option of every command with every edge
value of ``tests/test_cli_edges.py`` once (the test draws the same cases with hypothesis), input missing, so a value
in range is refused for the input and one out of range for the option.

``python bench/cli_edges.py`` (about 20 s) prints, per command: cases, those that ended in one line and exit 2 with
no traceback, and the out-of-range values whose line named their flag.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_cli_edges import EDGES, NUMERIC, in_range, missing_input_call, runner  # noqa: E402

from agent3d.cli import app  # noqa: E402


def main() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    for words, flag, kind, bounds in NUMERIC:
        for text in EDGES:
            with tempfile.TemporaryDirectory() as tmp:
                result = runner.invoke(app, [*missing_input_call(words, Path(tmp)), f"{flag}={text}"])
            one_line = (result.exit_code == 2 and "Traceback" not in result.output
                        and len(result.stderr.strip().splitlines()) == 1)
            outside = not in_range(text, kind, bounds)
            counts[words].update({"cases": 1, "one line, exit 2": one_line, "out of range": outside,
                                  "out of range, flag named": outside and flag in result.stderr})
    print("| command | options | cases | one line, exit 2 | out of range, flag named |")
    print("|---|---|---|---|---|")
    for words, c in counts.items():
        options = sum(1 for w, *_ in NUMERIC if w == words)
        print(f"| {words} | {options} | {c['cases']} | {c['one line, exit 2']} | "
              f"{c['out of range, flag named']} / {c['out of range']} |")


if __name__ == "__main__":
    main()
