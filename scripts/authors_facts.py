"""Print the authors' facts (``lib/linguistic_collapse/tables/authors_facts.py``) computed from their published files.

    .venv/bin/python scripts/authors_facts.py lc-2024_10_24.csv lc-2024_05_18.csv

Download the files from the authors' repository (``artifacts/``); they are not in this one.
R² intervals: 2000 resamples of their training runs, seed 0; Table 1 on their 21 seed replicas:
10,000 permutations, seed 0 (as the ``cpu`` profile's own test).
"""

from __future__ import annotations

import argparse
import sys

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import cli_path, positive_int
from linguistic_collapse.tables.authors_stats import authors_facts, format_facts


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, compute, print the dicts; one line on bad input."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=cli_path, help="the authors' lc-*.csv (later file first)")
    p.add_argument("--n-bootstrap", type=positive_int, default=2000)
    p.add_argument("--n-permutations", type=positive_int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        facts = authors_facts(args.files, args.n_bootstrap, args.n_permutations, args.seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_facts(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
