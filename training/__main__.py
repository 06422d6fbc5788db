"""``python -m rtbwe.training`` = ``rtbwe-train`` (what ``torchrun -m rtbwe.training`` runs)."""
import sys

from .cli import main

sys.exit(main())
