"""Snakemake in this process (``python _snakemake_wrapper.py ARGS``, the arguments of
``snakemake``), recording at exit its wall time and CPU: its own (``RUSAGE_SELF``) and that of
every process it waited for (``RUSAGE_CHILDREN``: jobs, and a job server with its children),
as JSON in ``$PREFALIGN_BENCH_RUSAGE``."""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time

_STARTED = time.perf_counter()


def _record() -> None:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["PREFALIGN_BENCH_RUSAGE"], "w") as fh:
        json.dump(
            {
                "wall_s": time.perf_counter() - _STARTED,
                "self_cpu_s": own.ru_utime + own.ru_stime,
                "children_cpu_s": children.ru_utime + children.ru_stime,
            },
            fh,
        )


atexit.register(_record)

if __name__ == "__main__":
    from snakemake.cli import main

    sys.argv = ["snakemake", *sys.argv[1:]]
    main()
