"""``python -m papernets`` (and ``torchrun -m papernets``) runs the command line."""

import sys

from papernets.cli import main

sys.exit(main())
