"""``python -m consumer``: see consumer.commands.cli."""

import sys

from consumer.commands.cli import main

sys.exit(main())
