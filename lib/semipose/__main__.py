"""``python -m semipose <command> ...``: the ``semipose`` command without its installed script."""
import sys

from semipose.commands import main

if __name__ == "__main__":
    sys.exit(main())
