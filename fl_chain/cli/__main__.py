"""``python -m fl_chain.cli ...``: the same as ``flchain ...``."""

from fl_chain.cli import run

run()
