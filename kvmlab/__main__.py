"""``python -m kvmlab``: see :mod:`kvmlab.cli`."""
import sys

from .cli import main

sys.exit(main())
