"""``python -m zoo_core.cli``: the ``zoo`` command."""

import sys

from zoo_core.cli.main import main

sys.exit(main())
