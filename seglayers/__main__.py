import sys

from seglayers.cli import main

sys.exit(main())
