"""``python -m adaptive_control.cli``: the ``adapt`` command."""

import sys

from adaptive_control.cli import main

sys.exit(main())
