"""Tests of the surrogate reward: fitting, gradients, ensembles, determinism and checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prefalign.learning.checkpoint import SurrogateCheckpointError, load_surrogate, save_surrogate
from prefalign.learning.surrogate import (
    FitReport,
    Surrogate,
    SurrogateConfig,
    fit,
    training_set_hash,
)
from prefalign.models.sde import VPSDE

CENTRE = np.array([0.5, -1.0])


def quadratic(x: np.ndarray) -> np.ndarray:
    """r(x) = -|x - c|^2 on 2-D points."""
    return -((x - CENTRE) ** 2).sum(axis=1)


def top_minus_bottom(x: np.ndarray) -> np.ndarray:
    """Mean brightness of the top half of a 1x8x8 image minus that of the bottom half."""
    return x[:, 0, :4, :].mean(axis=(1, 2)) - x[:, 0, 4:, :].mean(axis=(1, 2))


def points(n: int, seed: int, low: float = -3.0, high: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (n, 2)).astype(np.float32)


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)


def r_squared(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2))


def predict(s: Surrogate, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return s(torch.as_tensor(x)).numpy()


MLP_CONFIG = SurrogateConfig(hidden=32, epochs=80)
CNN_CONFIG = SurrogateConfig(arch="cnn", hidden=16, layers=3, epochs=60)


@pytest.fixture(scope="module")
def mlp_fit() -> tuple[Surrogate, FitReport, np.ndarray, np.ndarray]:
    x = points(300, seed=0)
    y = quadratic(x)
    surrogate, report = fit(x, y, MLP_CONFIG, seed=0)
    return surrogate, report, x, y


@pytest.fixture(scope="module")
def cnn_fit() -> tuple[Surrogate, FitReport, np.ndarray, np.ndarray]:
    x = images(300, seed=0)
    y = top_minus_bottom(x)
    surrogate, report = fit(x, y, CNN_CONFIG, seed=0)
    return surrogate, report, x, y


# --- fitting ---------------------------------------------------------------------------------


def test_mlp_fits_quadratic_on_held_out_points(mlp_fit):
    surrogate, report, x, _ = mlp_fit
    x_test = points(200, seed=1)
    assert r_squared(predict(surrogate, x_test), quadratic(x_test)) > 0.98
    assert report.n_examples == 300 and report.epochs == MLP_CONFIG.epochs
    assert report.final_loss < 0.02 and report.seconds > 0 and not report.warm_started
    # normalisation lives inside the model: per-feature for the MLP
    np.testing.assert_allclose(surrogate.x_mean.numpy(), x.mean(axis=0), rtol=1e-5)


def test_cnn_fits_image_statistic_on_held_out_images(cnn_fit):
    surrogate, _, _, _ = cnn_fit
    x_test = images(200, seed=1)
    assert r_squared(predict(surrogate, x_test), top_minus_bottom(x_test)) > 0.95
    assert surrogate.x_mean.shape == ()  # scalar normalisation for images


def test_outputs_are_in_oracle_units():
    x = points(200, seed=3)
    y = 1000.0 + 50.0 * quadratic(x)  # far from standardised units
    surrogate, _ = fit(x, y, MLP_CONFIG, seed=0)
    pred = predict(surrogate, x)
    assert abs(pred.mean() - y.mean()) < 0.05 * y.std()
    assert r_squared(pred, y) > 0.95


# --- forward / gradients / ensemble -------------------------------------------------------------


@pytest.mark.parametrize("which", ["mlp_fit", "cnn_fit"])
def test_gradient_matches_finite_differences(which, request):
    surrogate = request.getfixturevalue(which)[0]
    s64 = Surrogate(
        surrogate.config,
        surrogate.event_shape,
        x_mean=surrogate.x_mean,
        x_std=surrogate.x_std,
        y_mean=float(surrogate.y_mean),
        y_std=float(surrogate.y_std),
    )
    s64.load_state_dict(surrogate.state_dict())
    s64 = s64.double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((3, *surrogate.event_shape), generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(s64(x).sum(), x)  # what the sampler computes
    assert grad.shape == x.shape and torch.all(torch.isfinite(grad))
    h = 1e-6
    flat = x.detach().reshape(3, -1)
    for j in range(0, flat.shape[1], max(1, flat.shape[1] // 8)):  # a few coordinates
        e = torch.zeros_like(flat)
        e[:, j] = h
        up = s64((flat + e).reshape(x.shape)).detach()
        down = s64((flat - e).reshape(x.shape)).detach()
        fd = (up - down) / (2 * h)  # (3,)
        torch.testing.assert_close(grad.reshape(3, -1)[:, j], fd, rtol=1e-5, atol=1e-7)


def test_forward_rejects_wrong_event_shape(mlp_fit):
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mlp_fit[0](torch.zeros(4, 3))


def test_single_member_predict_has_zero_std(mlp_fit):
    surrogate = mlp_fit[0]
    x = torch.as_tensor(points(5, seed=2))
    mean, std = surrogate.predict(x)
    assert surrogate.members(x).shape == (1, 5)
    torch.testing.assert_close(mean, surrogate(x))
    assert torch.all(std == 0)


def test_ensemble_std_grows_away_from_data():
    x = points(100, seed=0, low=-1, high=1)
    config = SurrogateConfig(hidden=32, epochs=40, ensemble=4)
    surrogate, _ = fit(x, quadratic(x), config, seed=0)
    near = torch.as_tensor(points(50, seed=1, low=-1, high=1))
    far = torch.as_tensor(points(50, seed=1, low=4, high=6))
    with torch.no_grad():
        assert surrogate.members(near).shape == (4, 50)
        mean, std = surrogate.predict(far)
        torch.testing.assert_close(mean, surrogate(far))
        assert torch.all(std > 0)
        assert std.mean() > 3 * surrogate.predict(near)[1].mean()


# --- determinism / warm start / noise training -----------------------------------------------


def small_fit(seed: int, **kwargs) -> Surrogate:
    x = points(64, seed=0)
    config = SurrogateConfig(hidden=8, epochs=3, **kwargs)
    return fit(x, quadratic(x), config, seed=seed, sde=VPSDE())[0]


@pytest.mark.parametrize("kwargs", [{}, {"ensemble": 2, "noise_train": True}])
def test_same_seed_same_weights_different_seed_different(kwargs):
    rng_state = torch.get_rng_state()
    a, b, c = small_fit(0, **kwargs), small_fit(0, **kwargs), small_fit(1, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_warm_start_beats_scratch_after_few_epochs(mlp_fit):
    previous = mlp_fit[0]
    x = points(120, seed=5)
    y = quadratic(x)
    few = SurrogateConfig(hidden=32, epochs=3, warm_start=True)
    warm, warm_report = fit(x, y, few, seed=1, init=previous)
    scratch, scratch_report = fit(x, y, few, seed=1)
    assert warm_report.warm_started and not scratch_report.warm_started
    assert warm_report.final_loss < 0.5 * scratch_report.final_loss
    np.testing.assert_allclose(warm.x_mean.numpy(), x.mean(axis=0), rtol=1e-5)  # recomputed
    # warm_start=False ignores init
    cold = fit(x, y, SurrogateConfig(hidden=32, epochs=3, warm_start=False), seed=1, init=previous)
    assert not cold[1].warm_started
    assert all(torch.equal(v, scratch.state_dict()[k]) for k, v in cold[0].state_dict().items())


def test_warm_start_rejects_other_architecture(mlp_fit):
    x = points(16, seed=0)
    with pytest.raises(ValueError, match="hidden: 32 vs 8"):
        fit(x, quadratic(x), SurrogateConfig(hidden=8, epochs=1), seed=0, init=mlp_fit[0])


def test_noise_train_runs_and_needs_sde(capsys):
    x = images(64, seed=0)
    y = top_minus_bottom(x)
    config = SurrogateConfig(arch="cnn", hidden=8, epochs=3, noise_train=True)
    surrogate, report = fit(x, y, config, seed=0, sde=VPSDE(), progress=True)
    assert np.isfinite(report.final_loss)
    assert "fit surrogate" in capsys.readouterr().err  # the tqdm bar
    assert np.all(np.isfinite(predict(surrogate, x)))
    with pytest.raises(ValueError, match="sde"):
        fit(x, y, config, seed=0)


def test_fit_rejects_bad_data():
    x = points(10, seed=0)
    with pytest.raises(ValueError, match="y must have shape"):
        fit(x, np.zeros(9), MLP_CONFIG, seed=0)
    with pytest.raises(ValueError, match="finite"):
        fit(x, np.full(10, np.nan), MLP_CONFIG, seed=0)
    with pytest.raises(ValueError, match="cnn"):
        fit(x, quadratic(x), CNN_CONFIG, seed=0)


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("arch", "transformer"),
        ("hidden", 0),
        ("layers", 2.5),
        ("ensemble", 0),
        ("epochs", -1),
        ("lr", 0.0),
        ("lr", float("inf")),
        ("hidden", True),
        ("warm_start", "yes"),
        ("noise_train", 1),
        ("features", "pixels"),
        ("feature_dim", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"SurrogateConfig\.{field}"):
        SurrogateConfig(**{field: value})


def test_config_dict_round_trip_and_unknown_keys():
    config = SurrogateConfig(arch="cnn", ensemble=3, lr=1)
    assert isinstance(config.lr, float)
    assert SurrogateConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="'hiden'"):
        SurrogateConfig.from_dict({"hiden": 3})


def test_training_set_hash():
    x = points(10, seed=0)
    y = quadratic(x)
    h = training_set_hash(x, y)
    assert h == training_set_hash(x.astype(np.float64), y.astype(np.float32))
    assert len(h) == 64
    assert h != training_set_hash(x, y + 1e-3)
    assert h != training_set_hash(x.reshape(5, 4), y)


# --- checkpoints --------------------------------------------------------------------------------


def save(surrogate: Surrogate, report: FitReport, directory: Path, x, y) -> Path:
    return save_surrogate(
        surrogate,
        directory,
        config=surrogate.config,
        report=report,
        training_set_hash=training_set_hash(x, y),
    )


@pytest.mark.parametrize("which", ["mlp_fit", "cnn_fit"])
def test_save_load_round_trip_is_exact(which, request, tmp_path):
    surrogate, report, x, y = request.getfixturevalue(which)
    directory = save(surrogate, report, tmp_path / "surrogate", x, y)
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over
    loaded = load_surrogate(directory)
    assert loaded.config == surrogate.config and loaded.event_shape == surrogate.event_shape
    xt = torch.as_tensor(x[:50])
    with torch.no_grad():
        assert torch.equal(loaded(xt), surrogate(xt))
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["training_set_hash"] == training_set_hash(x, y)
    assert meta["fit"]["epochs"] == report.epochs and meta["fit"]["seconds"] == report.seconds
    assert meta["config"] == surrogate.config.to_dict()


def test_save_overwrites_a_checkpoint_but_not_other_directories(mlp_fit, tmp_path):
    surrogate, report, x, y = mlp_fit
    directory = save(surrogate, report, tmp_path / "ckpt", x, y)
    save(surrogate, report, directory, x, y)  # replacing an old checkpoint is fine
    assert load_surrogate(directory).config == surrogate.config
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        save(surrogate, report, tmp_path / "other", x, y)
    with pytest.raises(ValueError, match="config does not match"):
        save_surrogate(
            surrogate, tmp_path / "x", config=SurrogateConfig(), report=report, training_set_hash=""
        )


@pytest.fixture
def checkpoint(mlp_fit, tmp_path) -> Path:
    surrogate, report, x, y = mlp_fit
    return save(surrogate, report, tmp_path / "ckpt", x, y)


def test_missing_directory_raises(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(SurrogateCheckpointError, match=str(missing)):
        load_surrogate(missing)


def test_truncated_safetensors_raises(checkpoint):
    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SurrogateCheckpointError, match=str(weights)):
        load_surrogate(checkpoint)
    weights.write_bytes(b"\x00" * 7)
    with pytest.raises(SurrogateCheckpointError, match=str(weights)):
        load_surrogate(checkpoint)
    weights.unlink()
    with pytest.raises(SurrogateCheckpointError, match=str(weights)):
        load_surrogate(checkpoint)


def test_flipped_weight_bytes_raise(checkpoint):
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # still a valid safetensors file, but not the one recorded
    weights.write_bytes(bytes(data))
    with pytest.raises(SurrogateCheckpointError, match="sha256"):
        load_surrogate(checkpoint)


@pytest.mark.parametrize(
    "content", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"format": "prefalign-surrogate"}']
)
def test_garbage_meta_raises(checkpoint, content):
    meta = checkpoint / "meta.json"
    meta.write_bytes(content)
    with pytest.raises(SurrogateCheckpointError, match=str(meta)):
        load_surrogate(checkpoint)


def test_missing_meta_raises(checkpoint):
    meta = checkpoint / "meta.json"
    meta.unlink()
    with pytest.raises(SurrogateCheckpointError, match=str(meta)):
        load_surrogate(checkpoint)


def test_shape_mismatch_with_metadata_raises(checkpoint):
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["hidden"] = 16  # the weights were saved with hidden=32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SurrogateCheckpointError, match=r"model\.safetensors.*\(16, 2\)"):
        load_surrogate(checkpoint)
    meta["config"]["hidden"] = 32
    meta["normalisation"]["x_mean"] = [0.0, 0.0, 0.0]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SurrogateCheckpointError, match=str(meta_path)):
        load_surrogate(checkpoint)


def test_a_checkpoint_recording_the_removed_settings_loads(checkpoint):
    """weight_decay, batch_size, noise_t_max and activation were settings until they became
    constants: a meta.json written before records them at their defaults, and loads; one that
    records another value is refused, naming the key (its weights were trained otherwise)."""
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text())
    config = load_surrogate(checkpoint).config
    former = {"weight_decay": 1e-4, "batch_size": 64, "noise_t_max": 1.0, "activation": "silu"}
    meta["config"].update(former)
    meta_path.write_text(json.dumps(meta))
    assert load_surrogate(checkpoint).config == config
    others = {"weight_decay": 0.0, "batch_size": 32, "noise_t_max": 0.5, "activation": "tanh"}
    for key, other in others.items():
        meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], key: other}}))
        with pytest.raises(SurrogateCheckpointError, match=rf"config\.{key} = {other!r}: {key} is"):
            load_surrogate(checkpoint)


# hardening (issue 13): meta.json is checked before anything it describes is built


@pytest.mark.parametrize(
    ("key", "value"), [("hidden", 10**6), ("layers", 10**4), ("ensemble", 10**5)]
)
def test_huge_architecture_in_meta_is_refused_before_allocating(checkpoint, key, value):
    """`hidden: 10**6` in meta.json tried to allocate 4 TB before the weights were checked."""
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"][key] = value
    meta_path.write_text(json.dumps(meta))
    start = time.perf_counter()
    with pytest.raises(SurrogateCheckpointError, match=rf"{key} = {value} exceeds the limit"):
        load_surrogate(checkpoint)
    assert time.perf_counter() - start < 5


def test_architecture_within_limits_but_not_the_weights_is_refused_unbuilt(checkpoint, monkeypatch):
    """Within the limits, the module is compared with the weights on the meta device first."""
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["hidden"] = 16384
    meta["config"]["layers"] = 64  # ~17 GB of float32 if it were built
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SurrogateCheckpointError, match=r"model\.safetensors does not match"):
        load_surrogate(checkpoint)


def test_deeply_nested_meta_is_a_checkpoint_error(checkpoint):
    """A meta.json nested 100,000 deep raised RecursionError."""
    meta_path = checkpoint / "meta.json"
    meta_path.write_text(
        '{"format": "prefalign-surrogate", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(SurrogateCheckpointError, match="nested too deeply"):
        load_surrogate(checkpoint)


def test_oversized_meta_is_refused_unread(checkpoint):
    meta_path = checkpoint / "meta.json"
    meta_path.write_bytes(b" " * (17 << 20) + b"{}")
    with pytest.raises(SurrogateCheckpointError, match="over the limit"):
        load_surrogate(checkpoint)
