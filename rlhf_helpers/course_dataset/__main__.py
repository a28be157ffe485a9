"""`python -m rlhf_helpers.course_dataset --out data --seed 0` regenerates data/ (`--check`: compare only)."""

import sys

from . import main

sys.exit(main())
