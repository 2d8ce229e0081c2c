"""``python -m consumer``: see consumer.cli."""

import sys

from consumer.cli import main

sys.exit(main())
