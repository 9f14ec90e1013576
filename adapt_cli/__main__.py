"""``python -m adapt_cli``: the ``adapt`` command."""

import sys

from adapt_cli import main

sys.exit(main())
