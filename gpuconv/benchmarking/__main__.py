"""``python -m gpuconv.benchmarking``: the same as the ``gpuconv-bench`` console script."""
import sys

from .cli import main

sys.exit(main())
