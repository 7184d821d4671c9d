"""``python -m lowrank_learning.reproduce JOB.json RESULT.json CWD``: run one notebook (internal)."""

import sys

from .runner import _worker_main

sys.exit(_worker_main(sys.argv[1:]))
