"""``python -m borobridge``."""

import sys

from borobridge.cli import main

sys.exit(main())
