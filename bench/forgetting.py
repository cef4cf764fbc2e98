"""The forgetting benchmark: every continual-learning strategy against the joint-training bound.

Same as `perennial bench forgetting`; any of its options pass through, e.g.
    python bench/forgetting.py --quick
    python bench/forgetting.py --rows 300 --seeds 3 --out results
Writes results/forgetting.json and results/forgetting.png. It measures and reports; it is not a test.
"""

from __future__ import annotations

import sys

from perennial.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "forgetting", *sys.argv[1:]]))
