"""``python -m csrseg.cli``: what torchrun runs (``torchrun ... -m csrseg.cli train ...``)."""

import sys

from csrseg.cli import main

sys.exit(main())
