"""`python -m lrcore ...`: see lrcore/cli.py."""
import sys

from .cli import main

sys.exit(main())
