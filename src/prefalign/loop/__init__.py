"""The active-learning loop: Algorithm 1 of the draft paper, and the steps it is made of.

- :mod:`.spec`: :class:`~.spec.CampaignSpec`, a campaign's resolved settings (``spec.json``),
  built from the workflow config at plan time, where its checks run;
- :mod:`.steps`: one function per step of a round (sample, select, oracle, observe, fit) and
  the final evaluation: what the workflow's jobs call;
- :mod:`.campaign`: :func:`run_campaign`, the same steps in one process, line by line against
  the paper (what the benchmarks run).

This package's ``__init__`` imports nothing heavy: the workflow reads :mod:`.spec` at plan time
without paying for torch.
"""

from typing import Any

__all__ = ["run_campaign"]


def __getattr__(name: str) -> Any:  # PEP 562: `prefalign.loop.run_campaign` without eager torch
    if name == "run_campaign":
        from prefalign.loop.campaign import run_campaign

        return run_campaign
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
