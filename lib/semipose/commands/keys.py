"""List the config keys with their defaults and meanings (read from config/defaults.py).

    semipose keys                 every key (as --list-keys prints them)
    semipose keys lr              keys containing 'lr', in any case (TRAIN.LR, TRAIN.LR_STEP, ...)
    semipose keys 'TEST.*'        keys matching a glob (* ? [...]), in any case

Exit status 2 when nothing matches.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from typing import List, Optional, Sequence, Tuple

GLOB_CHARS = "*?["


def matching_keys(rows: Sequence[Tuple[str, str, str]], pattern: str
                  ) -> List[Tuple[str, str, str]]:
    """The rows whose key matches ``pattern``: a glob over the whole key when it holds * ? or [,
    else a substring; both ignore case (keys are upper case, patterns are typed in any)."""
    pattern = pattern.upper()
    if any(c in pattern for c in GLOB_CHARS):
        return [r for r in rows if fnmatch.fnmatchcase(r[0].upper(), pattern)]
    return [r for r in rows if pattern in r[0].upper()]


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.strip().splitlines()[2:]))
    p.add_argument("pattern", nargs="?", default="",
                   help="a part of the key (e.g. flip) or a glob (e.g. 'SSL.*'); case ignored")
    args = p.parse_args(argv)
    from ..config.describe import all_key_docs, format_key_docs
    rows = all_key_docs()
    if args.pattern:
        rows = matching_keys(rows, args.pattern)
    if not rows:
        print(f"error: no config key matches {args.pattern!r} (a part of a key or a glob such "
              f"as 'TRAIN.*'; case is ignored); {p.prog} alone lists them all", file=sys.stderr)
        return 2
    print(format_key_docs(rows))
    return 0
