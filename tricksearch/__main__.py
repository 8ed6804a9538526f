"""``python -m tricksearch`` runs the CLI."""

from __future__ import annotations

import sys

from tricksearch.cli import main

sys.exit(main())
