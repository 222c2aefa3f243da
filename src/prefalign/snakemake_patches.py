"""A fix to Snakemake's job scheduler, applied by the workflow (``workflow/rules/common.smk``).

Snakemake (9.x, ``snakemake.scheduling.job_scheduler``) ends every scheduling pass by starting a
``threading.Timer`` that wakes the scheduler again after the ``--max-jobs-per-timespan`` window
(default ``100/1s``), so that jobs held back by the rate limit get another chance. Each pass it
wakes starts the next timer, and every finished job wakes a pass of its own: after ``n`` jobs have
finished, ``n`` timer chains wake the scheduler ``n`` times per second, each pass re-resolving the
params and input sizes of every ready job. On the default config (397 jobs) this took 18-37 % of
one core for the whole run (issue 17; ``benchmarks/workflow_overhead.py --default``), growing with
the number of jobs. One pending wake-up is all the rate limit needs: it still fires one window
after the last pass, and a daemon timer does not hold the process open at exit.
"""

from __future__ import annotations

import threading
from typing import Any

#: the attribute of the scheduler that holds its pending wake-up
_PENDING = "_prefalign_pending_wakeup"


def schedule_one_wakeup(scheduler: Any, delay: float) -> None:
    """Wake ``scheduler`` (release its ``_open_jobs`` semaphore) after ``delay`` seconds, unless
    a wake-up is already pending: at most one timer per scheduler at any time."""
    pending = getattr(scheduler, _PENDING, None)
    if pending is not None and pending.is_alive():
        return
    timer = threading.Timer(delay, scheduler._open_jobs.release)
    timer.daemon = True
    setattr(scheduler, _PENDING, timer)
    timer.start()


def patch_job_scheduler() -> bool:
    """Replace ``JobScheduler._schedule_reevalutation`` (sic) by :func:`schedule_one_wakeup`.

    Returns whether the patch applied: False when this Snakemake has no such method (a version
    that schedules differently), which leaves its scheduler as it is."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if not callable(getattr(JobScheduler, "_schedule_reevalutation", None)):
        return False
    JobScheduler._schedule_reevalutation = schedule_one_wakeup
    return True
