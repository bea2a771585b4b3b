"""`python -m seglayers`: the same command as the `seglayers` script."""

import sys

from seglayers.cli import main

if __name__ == "__main__":
    sys.exit(main())
