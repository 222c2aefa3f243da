"""``python -m prefalign.oracles.human``: the same command as ``prefalign oracle human``."""

import sys

from prefalign.oracles.human.cli import main

sys.exit(main())
