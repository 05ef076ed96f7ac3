"""`python -m alertfusion`: the command-line interface (alertfusion.cli)."""

import os

# before numpy is imported: one OpenBLAS thread (see alertfusion.engine)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from alertfusion.cli import main  # noqa: E402

raise SystemExit(main())
