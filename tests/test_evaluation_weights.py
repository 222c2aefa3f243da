"""The final evaluation of samplers whose particles carry non-uniform weights (issue 13): the
``draft`` variant and ``fkc`` with ``final_resample: false`` return an importance sample, and its
rewards, threshold share and validity are weighted means."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from prefalign.loop import evaluation
from prefalign.loop.learners import SurrogateLearner
from prefalign.loop.spec import CampaignSpec, campaign_spec
from prefalign.sampling import SampleResult

# the oracle's reward is the first coordinate of each point
ORACLE = textwrap.dedent(
    """
    import sys, numpy as np
    with np.load(sys.argv[-2]) as d:
        ids, x = d["id"], d["x"]
    with open(sys.argv[-1], "w") as f:
        f.write("id,reward\\n" + "".join(f"{i},{float(v[0])!r}\\n" for i, v in zip(ids, x)))
    """
)


def _spec(tmp_path: Path, variant: str, **sampler: object) -> CampaignSpec:
    oracle = tmp_path / "oracle.py"
    oracle.write_text(ORACLE)
    config = {
        "budget": 8,
        "k": 4,
        "n_particles": 8,
        "eval_particles": 4,
        "domains": {
            "mixture2d": {
                "oracle": [sys.executable, str(oracle)],
                "oracle_timeout_s": 60,
                "reward_threshold": 1.5,
                "sampler": {"n_steps": 2},
            }
        },
        "methods": {"m": {"sampler": {"variant": variant, **sampler}}},
    }
    return campaign_spec(config, "mixture2d", "m", 0)


X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], dtype=np.float32)


def _fake_draw(log_weights: np.ndarray):
    def draw(spec, proposal, n, round_, step, *, progress=False):
        lw = torch.as_tensor(log_weights, dtype=torch.float64)
        return SampleResult(
            x=torch.as_tensor(X),
            log_weights=lw,
            path_log_weights=lw,
            ess=torch.ones(2, dtype=torch.float64),
            n_resamples=0,
            n_score_evals=0,
            n_reward_evals=0,
            lam=torch.zeros(2, dtype=torch.float64),
            ancestors=torch.arange(len(X)),
        )

    return draw


@pytest.mark.parametrize(
    ("variant", "sampler"), [("draft", {}), ("fkc", {"final_resample": False})]
)
def test_non_uniform_weights_give_weighted_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str, sampler: dict
) -> None:
    """The evaluation averaged `x` unweighted (the evaluation step): the draft-weights ablation was
    scored on the wrong distribution."""
    log_w = np.log(np.array([0.1, 0.1, 0.2, 0.6]))
    monkeypatch.setattr(evaluation, "draw", _fake_draw(log_w))
    monkeypatch.setattr(SurrogateLearner, "final_proposal", lambda *args: None)
    import prefalign.learning.checkpoint

    monkeypatch.setattr(prefalign.learning.checkpoint, "load_surrogate", lambda path: None)
    spec = _spec(tmp_path, variant, **sampler)
    out, samples = tmp_path / "eval.json", tmp_path / "samples.npz"
    record = evaluation.evaluate_campaign(spec, tmp_path / "surrogate", out, samples)
    w = np.array([0.1, 0.1, 0.2, 0.6])
    r = X[:, 0].astype(np.float64)
    assert record["mean_reward"] == pytest.approx(float(w @ r))  # 2.3, not the plain 1.5
    assert record["weighted"] is True
    assert record["reward_std"] == pytest.approx(float(np.sqrt(w @ (r - w @ r) ** 2)))
    assert record["frac_above_threshold"] == pytest.approx(0.8)  # rewards 2 and 3
    assert record["eval_ess"] == pytest.approx(1 / float(w @ w))
    assert json.loads(out.read_text())["mean_reward"] == pytest.approx(2.3)
    with np.load(samples) as data:
        np.testing.assert_allclose(data["log_weight"], log_w)


def test_uniform_weights_keep_the_plain_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluation, "draw", _fake_draw(np.zeros(4)))
    monkeypatch.setattr(SurrogateLearner, "final_proposal", lambda *args: None)
    import prefalign.learning.checkpoint

    monkeypatch.setattr(prefalign.learning.checkpoint, "load_surrogate", lambda path: None)
    spec = _spec(tmp_path, "fkc")
    record = evaluation.evaluate_campaign(
        spec, tmp_path / "surrogate", tmp_path / "e.json", tmp_path / "s.npz"
    )
    assert record["mean_reward"] == 1.5
    assert record["frac_above_threshold"] == 0.5
    assert record["weighted"] is False


def test_importance_weights() -> None:
    assert evaluation.importance_weights(np.zeros(5)) is None
    assert evaluation.importance_weights(np.full(3, -7.0)) is None
    w = evaluation.importance_weights(np.array([0.0, np.log(3.0), -np.inf]))
    np.testing.assert_allclose(w, [0.25, 0.75, 0.0])
    with pytest.raises(ValueError, match="NaN"):
        evaluation.importance_weights(np.array([0.0, np.nan]))
