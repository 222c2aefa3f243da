"""The FKC sampler against closed-form tilted targets (shared/docs/fkc-math.md)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from prefalign.models.mixture import GaussianMixture
from prefalign.models.sde import VPSDE
from prefalign.reporting.distances import energy_distance
from prefalign.sampling import SamplerConfig, effective_sample_size, sample, systematic_resample

N = 1500  # particles per run and exact samples per comparison
STEPS = 200
SDE = VPSDE(0.1, 20.0)
# Two components whose weights the tilt changes a lot: base and target clearly differ.
BASE = GaussianMixture.isotropic([0.8, 0.2], [[-1.5, 0.0], [1.5, 0.0]], 0.4)
A = torch.tensor([1.0, 0.5], dtype=torch.float64)
C = torch.tensor([1.5, 1.0], dtype=torch.float64)


def linear_reward(x: torch.Tensor) -> torch.Tensor:
    return x @ A.to(x.dtype)


def quadratic_reward(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - C.to(x.dtype)) ** 2).sum(1)


CASES = {
    "linear": (linear_reward, 1.5, BASE.tilt_linear(A, 1.5)),
    "quadratic": (quadratic_reward, 2.0, BASE.tilt_quadratic(C, 2.0)),
}


def run(variant: str, reward, lam: float, seed: int, **kw) -> torch.Tensor:
    cfg = SamplerConfig(variant=variant, n_steps=STEPS, lam_max=lam, **kw)
    gen = torch.Generator().manual_seed(seed)
    return sample(
        BASE.marginal_score(SDE), SDE, N, (2,), reward=reward, config=cfg, generator=gen
    ).x


def exact(mix: GaussianMixture, seed: int) -> torch.Tensor:
    return mix.sample(N, torch.Generator().manual_seed(10_000 + seed))


@pytest.fixture(scope="module")
def floors() -> dict[str, list[float]]:
    """Exact-vs-exact energy distances at the same N: the noise floor and its spread."""
    return {
        name: [energy_distance(exact(tgt, 2 * s), exact(tgt, 2 * s + 1)) for s in range(12)]
        for name, (_, _, tgt) in CASES.items()
    }


def _upper(floor: list[float]) -> float:
    return statistics.mean(floor) + 4 * statistics.stdev(floor)


@pytest.mark.parametrize("case", list(CASES))
def test_fkc_reaches_the_tilted_target(case: str, floors: dict[str, list[float]]) -> None:
    reward, lam, target = CASES[case]
    dists = [energy_distance(run("fkc", reward, lam, s), exact(target, 100 + s)) for s in range(3)]
    assert statistics.mean(dists) < _upper(floors[case]), (dists, floors[case])


@pytest.mark.parametrize("case", list(CASES))
def test_fkc_without_resampling_reaches_the_target(
    case: str, floors: dict[str, list[float]]
) -> None:
    reward, lam, target = CASES[case]
    x = run("fkc", reward, lam, 7, resample="never")
    assert energy_distance(x, exact(target, 7)) < _upper(floors[case])


@pytest.mark.parametrize("case", list(CASES))
def test_guidance_misses_the_tilted_target(case: str, floors: dict[str, list[float]]) -> None:
    reward, lam, target = CASES[case]
    dist = energy_distance(run("guidance", reward, lam, 0), exact(target, 0))
    assert dist > 20 * max(floors[case]), (dist, floors[case])


def test_base_matches_the_untilted_mixture(floors: dict[str, list[float]]) -> None:
    base_floor = [energy_distance(exact(BASE, 2 * s), exact(BASE, 2 * s + 1)) for s in range(12)]
    x = run("base", None, 1.0, 0)
    assert energy_distance(x, exact(BASE, 0)) < _upper(base_floor)
    assert energy_distance(x, exact(CASES["linear"][2], 0)) > 20 * max(floors["linear"])


def test_draft_variant_clips_and_never_resamples() -> None:
    cfg = SamplerConfig(variant="draft", n_steps=50, lam_max=2.0)
    res = sample(
        BASE.marginal_score(SDE),
        SDE,
        300,
        (2,),
        reward=linear_reward,
        config=cfg,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.n_resamples == 0
    assert float(res.log_weights.min()) >= 0.1 and float(res.log_weights.max()) <= 10.0
    assert torch.equal(res.log_weights, res.path_log_weights)


def test_path_weights_follow_resampled_copies() -> None:
    cfg = SamplerConfig(n_steps=60, lam_max=3.0, resample="always", final_resample=True)
    res = sample(
        BASE.marginal_score(SDE),
        SDE,
        400,
        (2,),
        reward=linear_reward,
        config=cfg,
        generator=torch.Generator().manual_seed(1),
    )
    assert res.n_resamples == 59  # every step but the last, whose weight update is skipped
    assert torch.count_nonzero(res.log_weights) == 0
    assert res.path_log_weights.std() > 0
    # final copies are identical particles carrying identical path weights
    _, inverse = torch.unique(res.x, dim=0, return_inverse=True)
    for group in inverse.unique()[:20]:
        assert res.path_log_weights[inverse == group].unique().numel() == 1


@pytest.mark.parametrize("reward_at", ["x", "xhat0"])
def test_same_seed_same_particles_and_chunking_changes_nothing(reward_at: str) -> None:
    reward, lam, _ = CASES["quadratic"]
    kw = dict(variant="fkc", n_steps=40, lam_max=lam, reward_at=reward_at)

    def go(seed: int, chunk: int | None):
        cfg = SamplerConfig(chunk_size=chunk, **kw)
        return sample(
            BASE.marginal_score(SDE),
            SDE,
            1000,
            (2,),
            reward=reward,
            config=cfg,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b, c, d = go(5, None), go(5, None), go(5, 77), go(6, None)
    assert torch.equal(a.x, b.x) and torch.equal(a.path_log_weights, b.path_log_weights)
    assert torch.equal(a.x, c.x) and torch.equal(a.path_log_weights, c.path_log_weights)
    assert torch.equal(a.ess, c.ess) and a.n_resamples == c.n_resamples
    assert (a.n_score_evals, a.n_reward_evals) == (c.n_score_evals, c.n_reward_evals)
    assert not torch.equal(a.x, d.x)


def test_map_chunks_joins_the_chunks_in_order() -> None:
    from prefalign.sampling.step import map_chunks

    x, z = torch.arange(10.0), -torch.arange(10.0)
    seen = []

    def fn(xc: torch.Tensor, zc: torch.Tensor):
        seen.append(xc.shape[0])
        return xc + zc, None, 2 * xc

    assert torch.equal(map_chunks(lambda xc: xc, x, chunk_size=None), x)
    summed, none, doubled = map_chunks(fn, x, z, chunk_size=4)
    assert seen == [4, 4, 2] and none is None
    assert torch.equal(summed, torch.zeros(10)) and torch.equal(doubled, 2 * x)
    assert torch.equal(map_chunks(lambda xc: xc * xc, x, chunk_size=3), x * x)
    one = map_chunks(fn, x, z, chunk_size=10)  # one chunk: fn's result as is
    assert one[1] is None and torch.equal(one[2], 2 * x)


def test_evaluation_counts() -> None:
    cfg = SamplerConfig(n_steps=10, lam_max=1.0, chunk_size=3)
    res = sample(
        BASE.marginal_score(SDE),
        SDE,
        10,
        (2,),
        reward=linear_reward,
        config=cfg,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.n_score_evals == 110  # 10 steps of 10 particles, and the final denoising
    assert (
        res.n_reward_evals == 100
    )  # r and grad r at every step (lam = 0 only at step 0, dlam > 0)
    base = sample(
        BASE.marginal_score(SDE),
        SDE,
        10,
        (2,),
        config=SamplerConfig(variant="base", n_steps=10, denoise=False),
    )
    assert base.n_reward_evals == 0 and base.n_score_evals == 100


def test_systematic_resampling_is_unbiased() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.tensor([0.05, 0.4, 0.01, 0.3, 0.24], dtype=torch.float64)
    n, reps = w.numel(), 20_000
    counts = torch.zeros(n, dtype=torch.float64)
    for _ in range(reps):
        idx = systematic_resample(torch.log(w), gen)
        c = torch.bincount(idx, minlength=n).double()
        # each particle is copied floor(N w) or ceil(N w) times
        assert torch.all(c >= torch.floor(n * w) - 1e-9) and torch.all(
            c <= torch.ceil(n * w) + 1e-9
        )
        counts += c
    assert torch.allclose(counts / reps, n * w, atol=0.02)


def test_effective_sample_size_bounds() -> None:
    assert effective_sample_size(torch.zeros(8)) == pytest.approx(8.0)
    assert effective_sample_size(torch.tensor([0.0, -math.inf, -math.inf])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_particles=-3), "n_particles must be an integer >= 1"),
        (dict(n_particles=0), "n_particles must be an integer >= 1"),
        (dict(config=dict(n_steps=0)), "n_steps = 0: .*greater than or equal to 1"),
        (dict(config=dict(variant="smc")), "variant = 'smc': Input should be 'fkc', 'draft'"),
        (dict(config=dict(resample="sometimes")), "resample = 'sometimes': Input should be"),
        (dict(config=dict(lam_max=-1.0)), "lam_max = -1.0: .*greater than or equal to 0"),
        (dict(config=dict(chunk_size=0)), "chunk_size = 0: .*greater than or equal to 1"),
        (dict(reward=None), "needs a reward function"),
        (dict(reward=lambda x: x.sum(1, keepdim=True)), r"reward returned shape \(16, 1\)"),
        (dict(reward=lambda x: x[:, 0] * float("nan")), "reward returned NaN or inf for 16 of 16"),
        (dict(reward=lambda x: torch.ones(x.shape[0])), "does not depend differentiably on x"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    args = dict(n_particles=16, reward=linear_reward, config=dict(n_steps=5))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample(
            BASE.marginal_score(SDE),
            SDE,
            args["n_particles"],
            (2,),
            reward=args["reward"],
            config=SamplerConfig(**args["config"]),
        )


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = SamplerConfig(variant="guidance", lam_max=2.0)
    assert SamplerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown sampler setting.*lamda"):
        SamplerConfig.from_dict({"lamda": 1.0})


# --- the sampler's options: time grid, final denoising, reward at the denoised estimate --------


@pytest.mark.parametrize("case", list(CASES))
def test_reward_at_xhat0_reaches_the_tilted_target(
    case: str, floors: dict[str, list[float]]
) -> None:
    """phi_t = lam r(xhat0(x_t)) with twisted-SMC weights: the final target is unchanged."""
    reward, lam, target = CASES[case]
    dists = [
        energy_distance(run("fkc", reward, lam, s, reward_at="xhat0"), exact(target, 200 + s))
        for s in range(2)
    ]
    assert statistics.mean(dists) < _upper(floors[case]), (dists, floors[case])


def test_guidance_at_xhat0_misses_the_target(floors: dict[str, list[float]]) -> None:
    reward, lam, target = CASES["linear"]
    dist = energy_distance(run("guidance", reward, lam, 0, reward_at="xhat0"), exact(target, 0))
    assert dist > 10 * max(floors["linear"]), (dist, floors["linear"])


@pytest.mark.parametrize("reward_at", ["x", "xhat0"])
def test_quadratic_grid_and_denoising_reach_the_target(
    reward_at: str, floors: dict[str, list[float]]
) -> None:
    reward, lam, target = CASES["linear"]
    x = run("fkc", reward, lam, 5, time_grid="quadratic", denoise=True, reward_at=reward_at)
    assert energy_distance(x, exact(target, 5)) < _upper(floors["linear"])


def test_time_grid_ends_at_t_min_and_refines_near_zero() -> None:
    from prefalign.sampling import time_grid

    uni = time_grid(SamplerConfig(n_steps=10, time_grid="uniform"))
    quad = time_grid(SamplerConfig(n_steps=10, time_grid="quadratic"))
    for grid in (uni, quad):
        assert grid[0] == 1.0 and grid[-1] == pytest.approx(1e-3) and len(grid) == 11
        assert all(a > b for a, b in zip(grid, grid[1:], strict=False))
    assert quad[-2] - quad[-1] < (uni[-2] - uni[-1]) / 5  # last step 10x finer


def test_denoising_removes_the_last_steps_noise() -> None:
    """A near-point mass: the uniform grid's last step leaves noise of g sqrt(dtau) >> s_tmin."""
    point = GaussianMixture.isotropic([1.0], [[0.5, -0.5]], 1e-3)
    spreads = {}
    for name, kw in {
        "plain": dict(time_grid="uniform", denoise=False),
        "denoise": dict(time_grid="uniform", denoise=True),
        "quadratic+denoise": dict(denoise=True, time_grid="quadratic"),
    }.items():
        cfg = SamplerConfig(variant="base", n_steps=50, **kw)
        x = sample(
            point.marginal_score(SDE),
            SDE,
            2000,
            (2,),
            config=cfg,
            generator=torch.Generator().manual_seed(0),
        ).x
        spreads[name] = float(x.std(0).mean())
    assert spreads["plain"] > 0.1  # sqrt(0.1 * 0.02) per step piles up: ~0.13
    assert spreads["denoise"] < spreads["plain"] / 2
    assert spreads["quadratic+denoise"] < 0.02, spreads


def test_ancestors_are_the_lineages_of_resampled_copies() -> None:
    cfg = SamplerConfig(variant="fkc", n_steps=40, lam_max=3.0, resample="always")
    res = sample(
        BASE.marginal_score(SDE),
        SDE,
        300,
        (2,),
        reward=linear_reward,
        config=cfg,
        generator=torch.Generator().manual_seed(1),
    )
    anc = res.ancestors
    assert anc.dtype == torch.int64 and anc.shape == (300,)
    assert int(anc.min()) >= 0 and int(anc.max()) < 300
    assert torch.unique(anc).numel() < 300  # resampling every step merges lineages
    base = sample(
        BASE.marginal_score(SDE),
        SDE,
        50,
        (2,),
        config=SamplerConfig(variant="base"),
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(base.ancestors, torch.arange(50))


def test_reward_at_xhat0_is_rejected_for_the_draft_variant() -> None:
    with pytest.raises(ValueError, match="reward_at 'xhat0' works with the variants"):
        SamplerConfig(variant="draft", reward_at="xhat0")


# ---------------------------------------------------------------------------------------------
# one step, and the one registry of variants
# ---------------------------------------------------------------------------------------------


def test_one_fkc_step_is_the_vp_specialisation_of_fkc_math() -> None:
    """fkc-math.md, "One Euler–Maruyama step", VP specialisation: drift = b/2 x + b (s + lam/2 gr)
    and dlogw = [dlam/dtau r + lam b/2 <gr, s + x>] dtau, here with the standard normal's score
    s = -x and a linear reward r = <a, x> (gr = a), every term written out by hand."""
    from prefalign.sampling import fkc_step

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    t, dtau, lam, dlam = 0.6, 0.01, 2.0, 0.05
    b = SDE.beta(t)
    step = dict(
        t=t,
        dtau=dtau,
        lam=lam,
        dlam=dlam,
        noise_scale=math.sqrt(b * dtau),
        update_weights=True,
        reward=linear_reward,
    )
    out = fkc_step(lambda xs, _t: -xs, SDE, x, z, **step)
    s, gr, r = -x, A.expand_as(x), x @ A
    drift = b / 2 * x + b * (s + lam / 2 * gr)
    torch.testing.assert_close(out.x, x + drift * dtau + math.sqrt(b * dtau) * z)
    expected = (dlam / dtau * r + lam * b / 2 * ((s + x) * gr).sum(1)) * dtau
    torch.testing.assert_close(out.log_weight_increment, expected)
    assert (out.n_score_evals, out.n_reward_evals) == (7, 7)
    chunked = fkc_step(lambda xs, _t: -xs, SDE, x, z, **step, chunk_size=3)
    assert torch.equal(chunked.x, out.x)
    assert torch.equal(chunked.log_weight_increment, out.log_weight_increment)


def test_variant_names_come_from_one_registry() -> None:
    """The settings, the command line and the workflow's schema accept exactly the registry's
    variants, and a wrong name is refused with the valid ones listed."""
    from pathlib import Path

    import yaml

    from prefalign.cli import build_parser
    from prefalign.settings import VARIANTS

    repo = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    enum = schema["$defs"]["SamplerConfig"]["properties"]["variant"]["enum"]
    assert enum == list(VARIANTS)
    parser = build_parser()
    sample_cmd = parser._subparsers._group_actions[0].choices["sample"]
    (action,) = [a for a in sample_cmd._actions if a.dest == "variant"]
    assert list(action.choices) == list(VARIANTS)
    with pytest.raises(
        ValueError, match="variant = 'tilted': .*'fkc', 'draft', 'guidance' or 'base'"
    ):
        SamplerConfig(variant="tilted")
