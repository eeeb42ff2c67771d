"""``python -m analyses.results``: see `analyses.results`."""

import sys

from analyses.results.document import main

sys.exit(main())
