"""``python -m bzna_boxes`` runs the ``bzna`` command."""

import sys

from .cli import main

sys.exit(main())
