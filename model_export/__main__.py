"""`python -m model_export`: see model_export.cli."""

import os

# PyTorch's OpenMP threads busy-wait between operators by default; on a shared two-core
# machine that makes every step wait for a descheduled thread (much slower fits).
# Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from model_export.cli import main  # noqa: E402

raise SystemExit(main())
