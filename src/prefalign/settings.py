"""Settings of the sampler, the surrogate, the DDPM training and fine-tuning: frozen dataclasses, saved as JSON beside what
they produced, validated on construction, importable without torch (the light workflow steps
read them without paying torch's start-up)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Variant = Literal["fkc", "draft", "guidance", "base"]
Schedule = Literal["linear", "constant"]
ResampleMode = Literal["ess", "always", "never"]
TimeGrid = Literal["uniform", "quadratic"]
RewardAt = Literal["x", "xhat0"]


@dataclass(frozen=True)
class VariantSpec:
    """What a sampler variant does: the one registry of variants (:data:`VARIANTS`) that the
    sampler, the settings, the command line and the workflow's schema all read."""

    tilted: bool  # the drift carries the reward gradient (when lam_max > 0)
    weighted: bool  # accumulates Feynman-Kac log-weights (when lam_max > 0)
    resampled: bool  # resamples on those weights
    clipped: bool  # the draft paper's clipped weights
    description: str


VARIANTS: dict[str, VariantSpec] = {
    "fkc": VariantSpec(True, True, True, False, "exact FK weights, systematic resampling"),
    "draft": VariantSpec(
        True, True, False, True, "the draft's Algorithm 2: clipped, never resampled"
    ),
    "guidance": VariantSpec(True, False, False, False, "tilted drift, no weights (biased)"),
    "base": VariantSpec(False, False, False, False, "no tilt: the base model"),
}
SCHEDULES: tuple[str, ...] = ("linear", "constant")
RESAMPLE_MODES: tuple[str, ...] = ("ess", "always", "never")
TIME_GRIDS: tuple[str, ...] = ("uniform", "quadratic")
REWARD_AT: tuple[str, ...] = ("x", "xhat0")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def _from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    """``cls(**data)``, refusing a key that is not a field of ``cls`` by name."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid: {', '.join(sorted(known))}")
    return cls(**data)


@dataclass(frozen=True)
class SamplerConfig:
    """Settings of one FKC sampling run (saved as JSON beside what it produced)."""

    variant: Variant = "fkc"  # fkc | draft | guidance | base
    n_steps: int = 100  # Euler–Maruyama steps from t = 1 to t = t_min
    t_min: float = 1e-3  # final forward time; the score blows up at t = 0
    lam_max: float = 1.0  # tilt strength at the data end (the paper's beta)
    schedule: Schedule = "linear"  # lam(tau): linear ramp, or constant after tilt_start
    tilt_start: float = 0.0  # sampling progress in [0, 1) where the tilt starts
    resample: ResampleMode = "ess"  # when to resample during sampling (fkc only)
    ess_threshold: float = 0.5  # resample when ESS < ess_threshold * N (resample="ess")
    final_resample: bool = True  # fkc: resample once at the end -> equally weighted particles
    chunk_size: int | None = None  # particles per score/reward call; None = all at once
    draft_dw_clip: float = 0.1  # draft variant: |dw| clip per step
    draft_w_min: float = 0.1  # draft variant: lower clip of w
    draft_w_max: float = 10.0  # draft variant: upper clip of w
    # uniform in t, or quadratic (fine steps near t = 0). Measured on digits, 400 base samples at
    # 50 steps: background-pixel std 0.116 (uniform) vs 0.024 (quadratic), real digits 0.013;
    # validity 90.5 % vs 93.8 % (real 93.3 %).
    time_grid: TimeGrid = "quadratic"
    denoise: bool = True  # last step without noise, then Tweedie at t_min (bg std 0.024 -> 0.017)
    reward_at: RewardAt = "x"  # tilt by r(x_t), or by r(xhat0(x_t)) (twisted-SMC weights)

    def __post_init__(self) -> None:
        _check_choice("variant", self.variant, VARIANTS)
        _check_choice("time_grid", self.time_grid, TIME_GRIDS)
        _check_choice("reward_at", self.reward_at, REWARD_AT)
        if not isinstance(self.denoise, bool):
            raise ValueError(f"denoise must be true or false; got {self.denoise!r}")
        if self.reward_at == "xhat0" and self.variant == "draft":
            raise ValueError(
                "reward_at 'xhat0' works with the variants 'fkc', 'guidance' and 'base', "
                "not with the draft paper's clipped weights ('draft')"
            )
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("resample", self.resample, RESAMPLE_MODES)
        if not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1; got {self.n_steps!r}")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min must lie in (0, 1); got {self.t_min}")
        if not math.isfinite(self.lam_max) or self.lam_max < 0:
            raise ValueError(f"lam_max must be finite and >= 0; got {self.lam_max}")
        if not 0.0 <= self.tilt_start < 1.0:
            raise ValueError(f"tilt_start must lie in [0, 1); got {self.tilt_start}")
        if not 0.0 < self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must lie in (0, 1]; got {self.ess_threshold}")
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an integer >= 1; got {self.chunk_size!r}")
        if not self.draft_w_min < self.draft_w_max:
            raise ValueError("draft_w_min must be smaller than draft_w_max")

    @property
    def tilted(self) -> bool:
        """Whether the drift carries the reward gradient."""
        return VARIANTS[self.variant].tilted and self.lam_max > 0

    @property
    def weighted(self) -> bool:
        """Whether the variant accumulates log-weights."""
        return VARIANTS[self.variant].weighted and self.lam_max > 0

    def lam(self, progress: float) -> float:
        """Tilt strength at sampling progress ``u`` in [0, 1] (``u = 1`` at the last step).

        ``linear``: 0 until ``tilt_start``, then a straight ramp to ``lam_max`` at ``u = 1``.
        ``constant``: 0 before ``tilt_start``, ``lam_max`` from it on.
        """
        if progress < self.tilt_start:
            return 0.0
        if self.schedule == "constant":
            return self.lam_max
        return self.lam_max * min(1.0, (progress - self.tilt_start) / (1.0 - self.tilt_start))

    def to_dict(self) -> dict:
        """Plain-dict form, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplerConfig:
        """Build from a dict; missing keys take their defaults, unknown keys are an error."""
        return _from_dict(cls, data, "sampler setting")


ARCHS = ("mlp", "cnn", "gp")
#: The GP surrogate's inputs: the normalised particle as it is, or a fixed random projection.
GP_FEATURES: tuple[str, ...] = ("raw", "projection", "network", "network-raw")
Activation = Literal["silu", "softplus", "gelu", "tanh"]
#: smooth activations only: the sampler needs gradients of r without kinks
ACTIVATION_NAMES: tuple[str, ...] = ("silu", "softplus", "gelu", "tanh")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"SurrogateConfig.{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"SurrogateConfig.{name} must be >= {low}, got {value}")


@dataclass(frozen=True)
class SurrogateConfig:
    """How a surrogate is built and trained (saved in every checkpoint's ``meta.json``)."""

    # "mlp" for vectors (d,), "cnn" for images (C, H, W), "gp": a Gaussian process on either
    # (prefalign.learning.gp; hidden, layers, ensemble, epochs, lr... are the networks' only)
    arch: Literal["mlp", "cnn", "gp"] = "mlp"
    hidden: int = 64  # MLP width / CNN channels; small data (tens to hundreds of points)
    layers: int = 2  # MLP hidden layers / CNN conv layers (3 convs see all of an 8x8 image)
    ensemble: int = 1  # independently initialised members, each on a bootstrap resample if > 1
    epochs: int = 200  # passes over the data per fit; data sets are small, so fits stay cheap
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW decoupled weight decay: mild shrinkage for tiny data sets
    batch_size: int = 64  # minibatch size (a smaller data set is one batch)
    warm_start: bool = True  # start from the previous round's weights (Algorithm 1 "Update CNN")
    noise_train: bool = False  # train on x_t = a_t x + s_t eps (draft paper: clean data only)
    noise_t_max: float = 1.0  # t ~ U(0, noise_t_max) per example per epoch when noise_train
    activation: Activation = "silu"  # smooth, so grad_x r has no kinks (ReLU is rejected)
    # gp: "raw" (the normalised particle), "projection" (random, fixed) or "network" (the last
    # hidden layer of the CNN/MLP surrogate fitted on the same answers: a deep kernel)
    features: str = "raw"
    feature_dim: int = 32  # gp: features of the random projection

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"SurrogateConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.features not in GP_FEATURES:
            raise ValueError(
                f"SurrogateConfig.features must be one of {GP_FEATURES}, got {self.features!r}"
            )
        _check_int("feature_dim", self.feature_dim, 1)
        for name, low in (("hidden", 1), ("layers", 1), ("ensemble", 1), ("epochs", 1)):
            _check_int(name, getattr(self, name), low)
        _check_int("batch_size", self.batch_size, 1)
        for name in ("lr", "weight_decay", "noise_t_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SurrogateConfig.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"SurrogateConfig.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.lr <= 0:
            raise ValueError(f"SurrogateConfig.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"SurrogateConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.noise_t_max <= 1:
            raise ValueError(
                f"SurrogateConfig.noise_t_max must be in (0, 1], got {self.noise_t_max}"
            )
        for name in ("warm_start", "noise_train"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"SurrogateConfig.{name} must be true or false, got {getattr(self, name)!r}"
                )
        if self.activation not in ACTIVATION_NAMES:
            hint = " (the sampler needs smooth gradients of r)" if self.activation == "relu" else ""
            raise ValueError(
                f"SurrogateConfig.activation must be one of {ACTIVATION_NAMES}, "
                f"got {self.activation!r}{hint}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurrogateConfig:
        """Build from a dict; missing keys take their defaults, unknown keys are an error."""
        return _from_dict(cls, data, "surrogate setting")


@dataclass(frozen=True)
class DDPMTraining:
    """The settings of a DDPM training run that the workflow's ``models.digits`` may set, and
    their defaults: the one place they are written. ``prefalign.models.ddpm.DDPMSettings``
    extends this class (its fields come first, in this order), and the workflow's ``train_digits``
    rule fills the keys a config leaves out from here; importable without torch, so that planning
    the workflow stays fast.

    Defaults: 2,000 steps of 128 images at a peak learning rate of 2e-3, seed 0, two torch
    threads (about 1.5 minutes on a 2-core CPU; base samples as valid as real held-out digits).
    """

    steps: int = 2000  # optimiser steps
    batch_size: int = 128  # images per step (drawn with replacement)
    lr: float = 2e-3  # peak AdamW learning rate (linear warm-up, then cosine decay to 0)
    seed: int = 0  # seeds the initial weights, the batches, the timesteps and the noise
    # torch CPU threads: a setting, not the machine's cores, because the weights' last digits
    # depend on it (the same value gives the same bytes). Two: the training is the default run's
    # critical path, and on 2 cores its second thread takes the core the other campaigns leave
    # idle (1.4x faster than one thread, measured side by side)
    threads: int = 2

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DDPMTraining:
        """Build from a (possibly empty) dict; missing keys take their defaults, unknown keys
        are an error."""
        return _from_dict(cls, data or {}, "DDPM training setting")


#: How the trusted tilt is picked from the frontier's grid: ``std``, the largest tilt whose
#: samples' mean posterior standard deviation of the reward stays within ``max_std``, and never
#: less than the configured tilt (the largest of the grid up to the evaluation sampler's lam_max).
TRUST_RULES: tuple[str, ...] = ("std",)


@dataclass(frozen=True)
class FinalTilt:
    """The sampler the user takes home after the budget: FKC tilted by a potential of the last
    surrogate, evaluated along a grid of tilts (the frontier), at a tilt picked by a rule fixed
    in advance that reads only what the campaign knows (never the user's reward).

    Attributes:
        pessimism: kappa of the potential ``mean - kappa std`` (the surrogate's posterior or
            ensemble spread): regions the answers have not reached are not rewarded.
        lams: the grid of tilts the final evaluation samples at (the frontier); empty: one
            evaluation at the method's own ``lam_max``, as before the frontier.
        rule: how the trusted tilt is picked from the grid (:data:`TRUST_RULES`).
        max_std: ``std`` rule's bound on the mean posterior std of the reward at the tilt's
            samples, in the reward's units.
    """

    pessimism: float = 0.0
    lams: tuple[float, ...] = ()
    rule: str = "std"
    max_std: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lams", tuple(float(v) for v in self.lams))
        if not (math.isfinite(self.pessimism) and self.pessimism >= 0):
            raise ValueError(f"final_tilt pessimism must be >= 0; got {self.pessimism}")
        if any(not (math.isfinite(v) and v >= 0) for v in self.lams):
            raise ValueError(f"final_tilt lams must be finite and >= 0; got {list(self.lams)}")
        if len(set(self.lams)) != len(self.lams):
            raise ValueError(f"final_tilt lams repeat a value: {list(self.lams)}")
        _check_choice("final_tilt rule", self.rule, TRUST_RULES)
        if not (math.isfinite(self.max_std) and self.max_std > 0):
            raise ValueError(f"final_tilt max_std must be > 0; got {self.max_std}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON."""
        d = asdict(self)
        d["lams"] = list(self.lams)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FinalTilt:
        """Build from a (possibly empty) dict; unknown keys are an error."""
        return _from_dict(cls, dict(data or {}), "final_tilt setting")


#: ``full``: every weight; ``split``: every weight, trained and used only at ``t >= t_split``
#: (EPAPA: the base model samples the rest); ``lora``: low-rank adapters (peft) on every linear
#: and convolution layer, merged into the weights when saved.
MODES: tuple[str, ...] = ("full", "split", "lora")
#: What the online learners fine-tune on: ``papa`` (the liked items, denoising score matching),
#: ``d3po`` (the answered pairs, the Diffusion-DPO loss against the base model).
LEARNERS: tuple[str, ...] = ("surrogate", "papa", "d3po")


@dataclass(frozen=True)
class FinetuneSettings:
    """Settings of one fine-tuning run.

    Attributes:
        mode: one of :data:`MODES`.
        steps: optimiser steps.
        batch_size: examples per step (drawn with replacement, by weight).
        lr: AdamW learning rate (constant after a 10 % linear warm-up).
        t_split: ``split`` mode: the forward time from which the fine-tuned network is trained
            and used; below it the base model denoises.
        decay: pull of the weights back toward the base model's, per step: ``theta -= lr decay
            (theta - theta_base)`` (for ``lora``: of the adapters toward the zero update).
        lora_rank: rank of the adapters (``lora``).
        dpo_beta: inverse temperature of the Diffusion-DPO loss (``d3po``), on per-value mean
            squared errors.
        particles: samples of the aligned sampler drawn to distil it (the ``finetune`` rule).
        seed: seeds the batches, timesteps and noise.
    """

    mode: str = "full"
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    t_split: float = 0.5
    decay: float = 0.0
    lora_rank: int = 4
    dpo_beta: float = 2000.0
    particles: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"finetune mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        for name in ("steps", "batch_size", "lora_rank", "particles"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"finetune {name} must be an integer >= 1; got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"finetune lr must be > 0; got {self.lr}")
        if not 0.0 <= self.t_split < 1.0:
            raise ValueError(f"finetune t_split must lie in [0, 1); got {self.t_split}")
        if not (math.isfinite(self.decay) and self.decay >= 0):
            raise ValueError(f"finetune decay must be >= 0; got {self.decay}")
        if not (math.isfinite(self.dpo_beta) and self.dpo_beta > 0):
            raise ValueError(f"finetune dpo_beta must be > 0; got {self.dpo_beta}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FinetuneSettings:
        """Build from a dict; missing keys take their defaults, unknown keys are an error."""
        return _from_dict(cls, dict(data or {}), "finetune setting")


def parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` pairs (``--domain-option``), values parsed as YAML scalars (numbers,
    booleans, strings)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r} is not of the form key=value")
        options[key] = yaml.safe_load(value)
    return options
