"""``python -m modelexport.cli``: the same command as the ``modelexport`` script."""

import sys

from modelexport.cli.commands import main

sys.exit(main())
