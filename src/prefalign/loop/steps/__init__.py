"""The steps of one active-learning round, each a function of files to files, one module each.

``sample -> select -> oracle -> observe -> fit`` (``shared/docs/design.md``, "Data flow of one
campaign"). Round 0 is the cold start: base samples, queries drawn at random. Every random draw
comes from a generator seeded by (campaign seed, round, step), so reruns are exact. What a step
does for a method is its learner's (:mod:`prefalign.loop.learners`) and selector's
(:mod:`prefalign.loop.selectors`) business: the steps only move files.

:func:`propose_round` runs the previous round's fit, this round's sampling and the selection in
one process (the workflow's ``propose`` job: torch starts once per round); the final evaluation
is in :mod:`prefalign.loop.evaluation`.
"""

from prefalign.loop.draws import BaseDrawCache, campaign_domain
from prefalign.loop.steps.answer import OracleRunner, answer_round, observe_round, oracle_round
from prefalign.loop.steps.fit import fit_round
from prefalign.loop.steps.propose import propose_round
from prefalign.loop.steps.sample import sample_round
from prefalign.loop.steps.select import select_round

__all__ = [
    "BaseDrawCache",
    "OracleRunner",
    "answer_round",
    "campaign_domain",
    "fit_round",
    "observe_round",
    "oracle_round",
    "propose_round",
    "sample_round",
    "select_round",
]
