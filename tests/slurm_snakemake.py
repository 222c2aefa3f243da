"""``python -m snakemake`` for the SLURM tests, asking the one-node test cluster for its jobs'
status every :data:`POLL_S` seconds.

The executor plugin waits 10 s longer after each status query that finds no job finished (up
to 3 minutes): on a production cluster that spares the scheduler, but here a group job of
half a minute was noticed a minute late and the SLURM tests spent most of their time asleep.
Only that interval changes; what the runs submit and do is the plugin's own.
Usage: python tests/slurm_snakemake.py SNAKEMAKE-ARGUMENTS...
"""

from __future__ import annotations

import sys

from snakemake_executor_plugin_slurm import Executor
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

#: Seconds between two status queries of the test cluster (squeue answers in milliseconds).
POLL_S = 2


def _interval(self: RemoteExecutor) -> float:
    value = RemoteExecutor.next_seconds_between_status_checks.fget(self)
    return min(value, POLL_S)


def _set_interval(self: RemoteExecutor, value: float) -> None:
    RemoteExecutor.next_seconds_between_status_checks.fset(self, min(value, POLL_S))


Executor.next_seconds_between_status_checks = property(_interval, _set_interval)

if __name__ == "__main__":
    from snakemake.cli import main

    sys.argv[0] = "snakemake"
    sys.exit(main())
