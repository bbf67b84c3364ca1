"""Import another tool's labels (DeepLabCut / Lightning Pose CSV) as a custom keypoint dataset.

    semipose convert dlc --csv CollectedData.csv --images-root PROJECT --out DIR

The same as ``python -m semipose.data.convert`` (see semipose/data/convert.py for the layout it
writes).
"""
from __future__ import annotations

from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    from ..data.convert import main as convert_main
    return convert_main(argv, prog=prog)
