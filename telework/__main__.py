"""``python -m telework``: the same as the ``telework`` console script."""

import sys

from telework.cli import main

sys.exit(main())
