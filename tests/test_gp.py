"""The Gaussian-process surrogate (prefalign.learning.gp) against BoTorch's own posterior, its
checkpoints, the pessimistic potential, and information-directed questions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prefalign.learning.checkpoint import SurrogateCheckpointError, load_surrogate, save_surrogate
from prefalign.learning.gp import GPSurrogate
from prefalign.learning.information import information_batch
from prefalign.learning.potential import tilt_potential
from prefalign.learning.surrogate import fit, training_set_hash
from prefalign.settings import SurrogateConfig

GP = SurrogateConfig(arch="gp")


def bump(x: np.ndarray) -> np.ndarray:
    """A smooth reward on 2-D points, high near (1, 0)."""
    return np.exp(-((x - np.array([1.0, 0.0])) ** 2).sum(axis=1))


def points(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (n, 2))


def choice_answers(y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Questions of ``size`` consecutive items; the best item of each is chosen."""
    questions = np.repeat(np.arange(len(y) // size), size).astype(str)
    answers = np.zeros(len(y))
    for q in range(len(y) // size):
        items = np.arange(q * size, (q + 1) * size)
        answers[items[np.argmax(y[items])]] = 1.0
    return answers, questions


def fitted(form: str, n: int = 40, seed: int = 0) -> tuple[GPSurrogate, np.ndarray, np.ndarray]:
    x = points(n, seed)
    y = bump(x)
    questions = None
    if form == "binary":
        y = (y > 0.3).astype(float)
    elif form in ("pairwise", "best-of-4"):
        y, questions = choice_answers(y, 2 if form == "pairwise" else 4)
    surrogate, _ = fit(x, y, GP, seed=seed, form=form, questions=questions)
    return surrogate, x, y


@pytest.mark.parametrize("form", ["rate", "binary", "pairwise", "best-of-4"])
def test_posterior_is_botorchs(form: str) -> None:
    """The closed form the sampler differentiates equals the library's posterior."""
    surrogate, _, _ = fitted(form)
    z = surrogate.features(torch.as_tensor(points(64, seed=9)))
    with torch.no_grad():
        posterior = surrogate.model.posterior(z)
        mean, std = surrogate.posterior_latent(z)
    assert torch.allclose(mean, posterior.mean.reshape(-1), atol=1e-8)
    assert torch.allclose(std, posterior.variance.reshape(-1).sqrt(), atol=1e-5)


def test_ratings_are_learnt_and_uncertainty_grows_away_from_data() -> None:
    surrogate, _, _ = fitted("rate", n=60)
    x = points(200, seed=3)
    with torch.no_grad():
        mean, std = surrogate.predict(torch.as_tensor(x, dtype=torch.float32))
    assert np.corrcoef(mean.numpy(), bump(x))[0, 1] > 0.95
    far = torch.tensor([[8.0, 8.0]], dtype=torch.float32)
    with torch.no_grad():
        far_std = surrogate.predict(far)[1]
    assert float(far_std) > 5 * float(std.mean())
    assert mean.dtype == torch.float32


@pytest.mark.parametrize("form", ["binary", "pairwise"])
def test_other_forms_rank_the_reward(form: str) -> None:
    surrogate, _, _ = fitted(form, n=80)
    x = points(200, seed=4)
    with torch.no_grad():
        mean = surrogate(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.corrcoef(mean, bump(x))[0, 1] > 0.6
    if form == "binary":
        assert ((mean >= 0) & (mean <= 1)).all()


def test_gradient_flows_to_the_particles() -> None:
    surrogate, _, _ = fitted("rate")
    x = torch.as_tensor(points(16, seed=5), dtype=torch.float32).requires_grad_(True)
    potential = tilt_potential(surrogate, 1.5)
    (grad,) = torch.autograd.grad(potential(x).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        mean, std = surrogate.predict(x)
        assert torch.allclose(potential(x), mean - 1.5 * std)
    assert tilt_potential(surrogate, 0.0) is surrogate


def test_fit_is_deterministic_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _, _ = fitted("rate", seed=2)
    after = torch.rand(1)
    b, _, _ = fitted("rate", seed=2)
    assert torch.equal(before, after)
    x = torch.as_tensor(points(32, seed=6))
    with torch.no_grad():
        assert torch.equal(a.predict(x)[0], b.predict(x)[0])


def test_images_are_normalised_by_one_mean_and_std() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (30, 1, 8, 8))
    y = x.mean(axis=(1, 2, 3))
    surrogate, _ = fit(x, y, GP, seed=0)
    assert surrogate.x_mean.dim() == 0
    projected, _ = fit(
        x, y, SurrogateConfig(arch="gp", features="projection", feature_dim=8), seed=0
    )
    assert projected.train_x.shape == (30, 8)
    with torch.no_grad():
        pred = projected(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.corrcoef(pred, y)[0, 1] > 0.9


@pytest.mark.parametrize("form", ["rate", "binary", "pairwise"])
def test_checkpoint_round_trip(tmp_path: Path, form: str) -> None:
    surrogate, x, y = fitted(form)
    _, report = fit(x, y, GP, seed=0, form=form) if form != "pairwise" else (None, None)
    from prefalign.learning.surrogate import FitReport

    report = report or FitReport(0, 0.0, 0.0, len(y), False)
    save_surrogate(surrogate, tmp_path / "ck", config=GP, report=report, training_set_hash="h")
    loaded = load_surrogate(tmp_path / "ck")
    assert isinstance(loaded, GPSurrogate) and loaded.head == surrogate.head
    probe = torch.as_tensor(points(50, seed=7), dtype=torch.float32)
    with torch.no_grad():
        for got, want in zip(loaded.predict(probe), surrogate.predict(probe), strict=True):
            assert torch.equal(got, want)


def test_corrupt_gp_checkpoints_fail_naming_the_path(tmp_path: Path) -> None:
    surrogate, x, y = fitted("rate")
    _, report = fit(x, y, GP, seed=0)
    ck = save_surrogate(
        surrogate,
        tmp_path / "ck",
        config=GP,
        report=report,
        training_set_hash=training_set_hash(x, y),
    )
    weights = ck / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SurrogateCheckpointError, match="model.safetensors"):
        load_surrogate(ck)
    # a consistent file whose tensors do not make a GP: a tensor missing
    import safetensors.torch

    tensors = {k: v.clone() for k, v in surrogate.state_dict().items() if k != "train_y"}
    safetensors.torch.save_file(tensors, weights, metadata={"format": "prefalign-surrogate"})
    meta = json.loads((ck / "meta.json").read_text())
    meta.pop("weights_sha256")
    (ck / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SurrogateCheckpointError, match="train_y"):
        load_surrogate(ck)


def _integrated_variance_after(surrogate: GPSurrogate, asked: np.ndarray, targets: np.ndarray):
    """Mean posterior variance of f at ``targets`` after noisy answers at ``asked``, by hand:
    the GP's posterior covariance conditioned on Gaussian observations (noise as fitted)."""
    za = surrogate.features(torch.as_tensor(asked))
    zt = surrogate.features(torch.as_tensor(targets))
    with torch.no_grad():
        joint = surrogate.model.posterior(torch.cat([za, zt])).mvn.covariance_matrix
    n = len(za)
    noise = surrogate.model.likelihood.noise * surrogate.predictive().scale ** 2
    s_aa = joint[:n, :n] + noise * torch.eye(n, dtype=joint.dtype)
    s_ta = joint[n:, :n]
    reduced = joint[n:, n:] - s_ta @ torch.linalg.solve(s_aa, s_ta.T)
    return float(reduced.diagonal().mean().detach())


def test_information_batch_is_the_greedy_variance_reduction() -> None:
    surrogate, _, _ = fitted("rate", n=20)
    candidates = points(30, seed=11)
    targets = points(40, seed=12) * 0.5 + np.array([1.0, 0.0])
    pending = candidates[:2]
    picked = information_batch(surrogate, candidates, targets, 3, pending=pending)
    assert len(set(picked.tolist())) == 3 and not set(picked.tolist()) & {0, 1}
    chosen = list(pending)
    for index in picked:  # each pick is the best next one given those before it
        scores = [
            _integrated_variance_after(surrogate, np.stack(chosen + [c]), targets)
            if i not in picked[: list(picked).index(index)] and i >= 2
            else np.inf
            for i, c in enumerate(candidates)
        ]
        assert int(np.argmin(scores)) == int(index)
        chosen.append(candidates[index])


def test_information_batch_refuses_a_network_surrogate() -> None:
    x = points(20, seed=0)
    net, _ = fit(x, bump(x), SurrogateConfig(epochs=5), seed=0)
    with pytest.raises(ValueError, match="Gaussian-process surrogate of ratings"):
        information_batch(net, x, x, 2)


def test_information_batch_picks_what_botorch_picks() -> None:
    """The closed-form greedy batch equals BoTorch's qNegIntegratedPosteriorVariance maximised
    by optimize_acqf_discrete (sequential greedy on fantasy models) over the same candidates."""
    from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
    from botorch.optim.optimize import optimize_acqf_discrete

    surrogate, _, _ = fitted("rate", n=25)
    candidates = points(40, seed=21)
    targets = points(30, seed=22) * 0.5 + np.array([1.0, 0.0])
    pending = candidates[:3]
    ours = information_batch(surrogate, candidates[3:], targets, 4, pending=pending)

    def feats(x: np.ndarray) -> torch.Tensor:
        return surrogate.features(torch.as_tensor(x)).detach()

    acquisition = qNegIntegratedPosteriorVariance(surrogate.model, mc_points=feats(targets))
    acquisition.set_X_pending(feats(pending))
    choices = feats(candidates[3:])
    picked, _ = optimize_acqf_discrete(acquisition, q=4, choices=choices, unique=True)
    theirs = [int(torch.nonzero(torch.all(choices == row, dim=1))[0]) for row in picked]
    assert ours.tolist() == theirs


def test_network_features_are_a_deep_kernel_and_round_trip(tmp_path: Path) -> None:
    """features: network: the GP on the CNN's last hidden layer, fitted on the same answers;
    the checkpoint holds the network too and reloads to the same predictions."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 1, 8, 8))
    y = x[:, 0, :4].mean(axis=(1, 2)) - x[:, 0, 4:].mean(axis=(1, 2))
    config = SurrogateConfig(arch="gp", features="network", hidden=8, layers=2, epochs=40)
    surrogate, report = fit(x, y, config, seed=0)
    assert surrogate.embedding is not None and surrogate.train_x.shape == (40, 8)
    probe = torch.as_tensor(rng.uniform(-1, 1, (30, 1, 8, 8)), dtype=torch.float32)
    probe.requires_grad_(True)
    mean, std = surrogate.predict(probe)
    (grad,) = torch.autograd.grad((mean - std).sum(), probe)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    save_surrogate(surrogate, tmp_path / "ck", config=config, report=report, training_set_hash="h")
    loaded = load_surrogate(tmp_path / "ck")
    with torch.no_grad():
        for got, want in zip(loaded.predict(probe), surrogate.predict(probe), strict=True):
            assert torch.equal(got, want)


@pytest.mark.parametrize("form", ["rate", "binary", "pairwise"])
def test_the_gp_follows_the_particles_device(form: str) -> None:
    """Fitted on the host, moved to the particles' device (torch's ``meta`` stands in for a
    GPU: the same device checks): the posterior, the potential and its gradient stay there."""
    surrogate, _, _ = fitted(form)
    surrogate = surrogate.to("meta")
    x = torch.zeros(8, 2, device="meta", requires_grad=True)
    mean, std = surrogate.predict(x)
    potential = tilt_potential(surrogate, 1.0)(x)
    (grad,) = torch.autograd.grad(potential.sum(), x)
    assert {t.device.type for t in (mean, std, potential, grad)} == {"meta"}
