"""``python -m fl_chain.cli ...``: the same as ``flchain ...``."""

import sys

from fl_chain.cli import main

sys.exit(main())
