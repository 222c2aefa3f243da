"""The configured device reaches every tensor, proven without a GPU on torch's ``meta`` device.

A meta tensor has a shape, a dtype and a device but no values, and every operation checks that
its operands share a device, as CUDA does: a tensor left on the CPU fails here the way it would
on a GPU (``Tensor on device cpu is not on the expected device meta!``). A meta tensor cannot be
read either (``Tensor.item() cannot be called on meta tensors``), so a step that waits for a value
where no decision needs one fails here too. Each test runs the real code path of a workflow step
with the campaign's ``device: meta``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler

from prefalign.loop.draws import campaign_domain, draw
from prefalign.loop.learners import learner_for
from prefalign.loop.spec import CampaignSpec, campaign_spec
from prefalign.models.ddpm import DDPMSettings, build_unet
from prefalign.models.sde import VPSDE
from prefalign.runtime import resolve_device, torch_generator
from prefalign.sampling import sample
from prefalign.sampling.step import fkc_step, xhat0_move, xhat0_potential
from prefalign.settings import SamplerConfig, SurrogateConfig

META = torch.device("meta")
USERS = {"mixture2d": "one-mode", "digits": "thick-3", "pretrained": "brightness"}
SRC = Path(__file__).resolve().parents[1] / "src" / "prefalign"


def _spec(domain: str = "mixture2d", device: str = "meta", **options) -> CampaignSpec:
    config = {
        "budget": 8,
        "k": 4,
        "n_particles": 16,
        "eval_particles": 8,
        "device": device,
        "domains": {
            domain: {
                "oracle": ["prefalign", "oracle", "builtin", domain, USERS[domain]],
                "options": options,
                "sampler": {"n_steps": 4},
            }
        },
        "methods": {"m": {"sampler": {"variant": "fkc"}}},
    }
    return campaign_spec(config, domain, "m", 0)


def _on_meta(**tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        if tensor is not None:
            assert tensor.device == META, f"{name} is on {tensor.device}, not on meta"


def _reward_gradient(reward, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.detach().requires_grad_(True)
    r = reward(xr)
    (grad,) = torch.autograd.grad(r.sum(), xr)
    return r, grad


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained one-channel 8x8 UNet with its DDPM scheduler (a digits model dir)."""
    path = tmp_path_factory.mktemp("device") / "unet"
    settings = DDPMSettings(block_out_channels=(8, 16), norm_num_groups=8)
    unet = build_unet(settings, sample_size=8, channels=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(path)
    return path


# --- domains ----------------------------------------------------------------------------------
def test_mixture_score_and_reward_gradient_are_on_the_campaigns_device() -> None:
    domain = campaign_domain(_spec())
    x = torch.zeros(5, 2, device=META)
    r, grad = _reward_gradient(domain.oracle("one-mode").torch, x)
    _on_meta(score=domain.score(x, 0.5), reward=r, reward_gradient=grad)


def test_digits_unet_score_and_reward_gradient_are_on_the_campaigns_device(unet_dir) -> None:
    domain = campaign_domain(_spec("digits", model_dir=str(unet_dir)))
    x = torch.zeros(3, 1, 8, 8, device=META)
    r, grad = _reward_gradient(domain.oracle("thick-3").torch, x)
    _on_meta(unet_score=domain.score(x, 0.5), reward=r, reward_gradient=grad)


def test_pretrained_unet_score_is_on_the_campaigns_device(unet_dir) -> None:
    domain = campaign_domain(_spec("pretrained", model_dir=str(unet_dir)))
    _on_meta(unet_score=domain.score(torch.zeros(2, 1, 8, 8, device=META), 0.3))


def test_the_domain_cache_is_keyed_by_device() -> None:
    on_meta, on_cpu = campaign_domain(_spec()), campaign_domain(_spec(device="cpu"))
    assert on_meta is not on_cpu and campaign_domain(_spec()) is on_meta
    assert on_cpu.score(torch.zeros(2, 2), 0.5).device.type == "cpu"


# --- the surrogate ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "shape", "form"),
    [("mlp", (2,), "rate"), ("cnn", (1, 8, 8), "rate"), ("mlp", (2,), "pairwise")],
)
def test_surrogate_fit_forward_and_gradient_are_on_the_device(
    arch, shape, form, monkeypatch
) -> None:
    from prefalign.learning import ensemble as module
    from prefalign.learning.surrogate import fit

    monkeypatch.setattr(module, "BATCH_SIZE", 4)  # several minibatches per epoch
    config = SurrogateConfig(arch=arch, hidden=8, layers=2, epochs=2, ensemble=2)
    if arch == "cnn":
        config = SurrogateConfig.from_dict({**config.to_dict(), "noise_train": True})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *shape)).astype(np.float32)
    y = rng.uniform(size=8) if form == "rate" else np.tile([1.0, 0.0], 4)
    questions = np.repeat([f"q{i}" for i in range(4)], 2) if form == "pairwise" else None
    surrogate, _ = fit(
        x, y, config, seed=0, sde=VPSDE(), form=form, questions=questions, device=META
    )
    for name, tensor in [*surrogate.named_parameters(), *surrogate.named_buffers()]:
        _on_meta(**{name: tensor})
    xm = torch.zeros(3, *shape, device=META)
    r, grad = _reward_gradient(surrogate, xm)
    mean, std = surrogate.predict(xm)
    _on_meta(forward=r, gradient=grad, members=surrogate.members(xm), mean=mean, std=std)


# --- the sampler ------------------------------------------------------------------------------
def _score(x: torch.Tensor, t: float) -> torch.Tensor:
    return -x


def _reward(x: torch.Tensor) -> torch.Tensor:
    return -(x * x).sum(dim=1)


def test_fkc_step_and_the_xhat0_halves_are_on_the_device() -> None:
    x, z = torch.zeros(6, 2, device=META), torch.zeros(6, 2, device=META)
    common = dict(t=0.5, dtau=0.01, noise_scale=0.1, reward=_reward)
    for chunk in (None, 4):
        step = fkc_step(
            _score,
            VPSDE(),
            x,
            z,
            lam=1.0,
            dlam=0.1,
            update_weights=True,
            chunk_size=chunk,
            **common,
        )
        _on_meta(x=step.x, log_weight_increment=step.log_weight_increment)
    potential = xhat0_potential(_score, _reward, VPSDE(), x, t=0.5, lam=1.0, need_grad=True)
    _on_meta(score=potential.score, phi=potential.phi, grad_phi=potential.grad_phi)
    moved, carry = xhat0_move(VPSDE(), x, potential, z, t=0.5, dtau=0.01, sigma=0.1, weighted=True)
    _on_meta(x=moved, carry=carry)


@pytest.mark.parametrize(
    "sampler",
    [
        {"variant": "base"},
        {"variant": "fkc", "resample": "ess"},
        {"variant": "fkc", "resample": "always", "chunk_size": 5},
        {"variant": "draft"},
        {"variant": "guidance"},
        {"variant": "fkc", "reward_at": "xhat0"},
    ],
    ids=lambda s: "-".join(str(v) for v in s.values()),
)
def test_the_sampler_keeps_every_tensor_on_the_device(sampler: dict) -> None:
    """Every variant, with no value read where no decision needs it (a meta tensor has none)."""
    config = SamplerConfig.from_dict({"n_steps": 5, "lam_max": 2.0, **sampler})
    result = sample(
        _score,
        VPSDE(),
        12,
        (2,),
        reward=_reward,
        config=config,
        generator=torch.Generator().manual_seed(0),
        device=META,
    )
    _on_meta(
        x=result.x,
        log_weights=result.log_weights,
        path_log_weights=result.path_log_weights,
        ess=result.ess,
        ancestors=result.ancestors,
        lam=result.lam,
    )


def test_a_rounds_draw_tilted_by_a_cpu_fitted_surrogate_is_on_the_device() -> None:
    """What ``propose`` does: a surrogate loaded from its checkpoint (on the CPU) tilts the
    sampler on the campaign's device."""
    from prefalign.learning.surrogate import fit

    spec = _spec()
    rng = np.random.default_rng(0)
    surrogate, _ = fit(
        rng.normal(size=(8, 2)).astype(np.float32),
        rng.uniform(size=8),
        SurrogateConfig(hidden=8, layers=2, epochs=2),
        seed=0,
    )
    domain = campaign_domain(spec)
    proposal = learner_for(spec.method.learner).proposal(spec, domain, surrogate, 1)
    result = draw(spec, proposal, 8, 1, "sample")
    _on_meta(x=result.x, path_log_weights=result.path_log_weights)


# --- fine-tuning --------------------------------------------------------------------------------
def test_distillation_reloads_its_models_on_the_campaigns_device(unet_dir, tmp_path, monkeypatch):
    """The ``finetune`` rule saves each distilled model and samples the reloaded one: on the
    campaign's device, like the other two reloads (a learner's round, the final evaluation)."""
    from prefalign.learning.checkpoint import save_surrogate
    from prefalign.learning.surrogate import fit, training_set_hash
    from prefalign.loop import finetuning
    from prefalign.oracles.builtin import answer_in_process

    config = {
        "budget": 4,
        "k": 4,
        "n_particles": 8,
        "eval_particles": 4,
        "device": "cpu",
        "finetune": {"steps": 2, "batch_size": 4, "particles": 8},
        "domains": {
            "digits": {
                "oracle": ["prefalign", "oracle", "builtin", "digits", "thick-3"],
                "options": {"model_dir": str(unet_dir)},
                "sampler": {"n_steps": 3},
            }
        },
        "methods": {"m": {"sampler": {"variant": "fkc", "lam_max": 1.0}}},
    }
    spec = campaign_spec(config, "digits", "m", 0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, size=(8, 1, 8, 8)).astype(np.float32), rng.uniform(size=8)
    surrogate, report = fit(x, y, spec.surrogate, seed=0)
    save_surrogate(
        surrogate, tmp_path / "s", config=spec.surrogate, report=report,
        training_set_hash=training_set_hash(x, y),
    )  # fmt: skip
    devices = []
    real = finetuning.load_finetuned

    def spy(path, device=None):
        devices.append(device)
        return real(path, "cpu" if device is None else device)

    monkeypatch.setattr(finetuning, "load_finetuned", spy)
    finetuning.distil_campaign(
        spec, tmp_path / "s", tmp_path / "out", ["full"], runner=answer_in_process
    )
    assert devices == [resolve_device(spec.device)], (
        f"distil_campaign reloaded its model with device={devices}, not the campaign's"
    )


def test_a_fine_tuned_models_reload_samples_on_the_device(unet_dir, tmp_path) -> None:
    from prefalign.finetune.model_dir import load_finetuned, save_finetuned
    from prefalign.finetune.train import denoising_fit
    from prefalign.models.ddpm import NoiseSchedule, load_unet
    from prefalign.settings import FinetuneSettings

    unet = load_unet(unet_dir)
    for mode in ("full", "split"):
        settings = FinetuneSettings(mode=mode, steps=2, batch_size=4, t_split=0.5)
        tuned, _ = denoising_fit(unet, NoiseSchedule(), torch.rand(8, 1, 8, 8), None, settings)
        record = {"mode": mode, "t_split": 0.5}
        model = load_finetuned(
            save_finetuned(tmp_path / mode, tuned, unet, NoiseSchedule(), record), META
        )
        x = torch.zeros(2, 1, 8, 8, device=META)
        _on_meta(tuned=model.score(x, 0.9), base_below_t_split=model.score(x, 0.1))


# --- no tensor is made off the device -------------------------------------------------------------
#: torch functions that make a tensor (or a generator) from nothing: each must say where.
FACTORIES = {
    "tensor", "as_tensor", "zeros", "ones", "empty", "full", "arange", "linspace", "logspace",
    "eye", "rand", "randn", "randint", "randperm", "normal", "Generator",
}  # fmt: skip
#: Where the particles, the networks and their inputs live (``models``: the mixture and the SDE,
#: the domains' exact score; the DDPM trainer runs on the CPU by design).
PLACES = ("sampling", "learning", "finetune", "domains", "models/mixture.py", "models/sde.py")


def _unplaced(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Name) and owner.id == "torch"):
            continue
        if node.func.attr in FACTORIES and "device" not in {k.arg for k in node.keywords}:
            found.append(f"{path.relative_to(SRC)}:{node.lineno}: torch.{node.func.attr}(...)")
    return found


def test_every_tensor_made_where_the_particles_live_names_its_device() -> None:
    """``torch.zeros(n)`` lands on the CPU whatever the particles' device: every factory call
    names its device (the particles', the generator's, or ``"cpu"`` for a value kept on the host
    on purpose). ``*_like`` and ``x.new_*`` inherit theirs; ``torch.from_numpy`` is always on the
    host and moved by its user."""
    paths = []
    for place in PLACES:
        where = SRC / place
        paths += sorted(where.rglob("*.py")) if where.is_dir() else [where]
    unplaced = [line for path in paths for line in _unplaced(path)]
    assert not unplaced, "tensors made without a device:\n" + "\n".join(unplaced)


# --- randomness, reads and CUDA's settings ------------------------------------------------------
def test_a_steps_generator_draws_on_the_device_from_the_same_stream() -> None:
    """On the CPU (and on meta, which has no generator) the stream of every run so far; a GPU
    gets a generator of its own seeded alike."""
    from prefalign.runtime import rng_seed

    expected = torch.randn(5, generator=torch.Generator().manual_seed(rng_seed(3, 2, "sample")))
    for generator in (
        torch_generator(3, 2, "sample"),
        torch_generator(3, 2, "sample", "cpu"),
        torch_generator(3, 2, "sample", META),
    ):
        assert generator.device.type == "cpu"
        assert torch.equal(torch.randn(5, generator=generator), expected)
    if torch.cuda.is_available():  # pragma: no cover - only where a GPU is
        assert torch_generator(3, 2, "sample", "cuda").device.type == "cuda"


def test_cuda_gets_deterministic_kernels_and_the_cpu_is_left_alone(monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        resolve_device("cpu")
        assert not torch.are_deterministic_algorithms_enabled()
        assert resolve_device("cuda") == torch.device("cuda")  # no GPU needed to set them
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


@pytest.mark.parametrize(
    ("sampler", "reads"),
    [
        ({"variant": "base"}, 1),  # the checks, once at the end
        ({"variant": "guidance"}, 1),
        ({"variant": "fkc", "resample": "always"}, 1),
        ({"variant": "fkc", "resample": "ess"}, 7),  # after each step but the last, and the end
        ({"variant": "fkc", "resample": "ess", "reward_at": "xhat0"}, 7),  # before steps 1..6
    ],
    ids=lambda s: "-".join(str(v) for v in s.values()) if isinstance(s, dict) else str(s),
)
def test_the_sampler_reads_the_device_only_for_a_decision(monkeypatch, sampler, reads) -> None:
    from prefalign.sampling import step

    calls, real = [], step.to_host
    monkeypatch.setattr(step, "to_host", lambda tensor: calls.append(tensor.shape) or real(tensor))
    config = SamplerConfig.from_dict({"n_steps": 7, "lam_max": 2.0, **sampler})
    sample(_score, VPSDE(), 12, (2,), reward=_reward, config=config, device=META)
    assert len(calls) == reads, calls


def test_a_nan_found_later_still_names_its_time_point() -> None:
    """The checks are read late, but the error is the one of the step that made the NaN."""

    from prefalign.sampling.schedule import time_grid

    config = SamplerConfig(variant="base", n_steps=10)
    bad = time_grid(config)[4]

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        return -x * (float("nan") if t <= bad else 1.0)

    with pytest.raises(ValueError, match=rf"^score returned NaN or inf at t={bad:.4f}$"):
        sample(score, VPSDE(), 8, (2,), config=config, generator=torch.Generator().manual_seed(0))


def test_the_device_is_the_configs_not_a_domain_option() -> None:
    from prefalign.domains import get_domain

    with pytest.raises(ValueError, match="'device' is the config's top-level setting"):
        get_domain("mixture2d", {"device": "cuda"}, "cpu")


# --- the GPU jobs' plan -------------------------------------------------------------------------
def _readme_gpu_command() -> list[str]:
    readme = (SRC.parents[1] / "README.md").read_text()
    (line,) = [s for s in readme.splitlines() if s.startswith("snakemake") and "device=cuda" in s]
    args = line.split()[1:]
    i = args.index("--configfile")  # the user's own domain: the tiny config's here
    return args[:i] + args[i + 2 :]


@pytest.mark.parametrize(
    "args",
    [["--workflow-profile", "profiles/gpu-workstation"], _readme_gpu_command()],
    ids=["gpu-workstation", "readme"],
)
def test_a_gpu_run_plans_one_job_per_gpu_and_no_job_server(tmp_path, args) -> None:
    """``snakemake -n`` of a GPU run: every job that runs torch asks for one GPU, the GPUs
    are limited to the one there is, and the job server is off."""
    import subprocess
    import sys

    from workflow_helpers import env, tiny_config, workdir

    assert "--resources" in args or "profiles/gpu-workstation" in args
    wd = workdir(tmp_path, tiny_config())
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *args],
        cwd=wd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    jobs = [block.split(":", 1) for block in out.split("\nrule ")[1:]]
    gpus = {}
    for rule, body in jobs:
        (resources,) = [s for s in body.splitlines() if s.strip().startswith("resources:")]
        gpus.setdefault(rule, set()).add("gpu=1" in resources)
    assert gpus.pop("cold_start") == gpus.pop("propose") == gpus.pop("evaluate") == {True}
    assert all(asks == {False} for asks in gpus.values()), gpus
    assert "at most 1 GPU job(s) at a time" in out
    assert "the job server is off" in out


def test_the_job_server_serves_cpu_runs_only() -> None:
    from prefalign.cli.job_server import cuda_started, serves

    assert serves("cpu")
    assert not any(serves(device) for device in ("cuda", "cuda:1", "auto"))
    assert not cuda_started()  # nothing here started CUDA (the server's own check)
