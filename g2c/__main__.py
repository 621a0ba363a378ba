"""``python -m g2c ...`` — the ``g2c`` command (also what ``torchrun -m g2c`` runs)."""

import sys

from g2c.cli import main

if __name__ == "__main__":
    sys.exit(main())
