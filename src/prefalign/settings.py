"""Settings of the sampler, the surrogate, the DDPM training and fine-tuning: frozen dataclasses,
saved as JSON beside what they produced, validated on construction, importable without torch (the
light workflow steps read them without paying torch's start-up).

Each setting's type, bounds and description are written once, in its annotation: construction
checks them, and the workflow's config schema is generated from them
(:mod:`prefalign.config_schema`). The rules between settings that a schema cannot express
(``reward_at: xhat0`` refused with ``variant: draft``, distinct ``final_tilt.lams``) are validators of the class, checked on construction only. The classes are
pydantic dataclasses, so still dataclasses (``dataclasses.replace``, ``asdict``, ``fields``); a
bad value raises a ``ValueError`` naming the class, the setting and the value.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass


def _setting(description: str | None = None, **constraints: Any) -> Any:
    """The annotation of a setting: its type taken strictly (no ``"3"`` for 3, no 1 for true;
    an integer is a number, and becomes a float), its ``constraints`` (``ge``, ``gt``, ``le``,
    ``lt``, ``allow_inf_nan``) and its description (shown in the config schema)."""
    return Field(strict=True, description=description, **constraints)


def _choice(description: str) -> Any:
    """The annotation of a setting whose type is one of a registry's names (a ``Literal``)."""
    return Field(description=description)


def _describe(owner: str, err: ValidationError) -> str:
    """One line per bad setting: ``SamplerConfig.lam_max = -1.0: Input should be ...``."""
    problems = []
    for e in err.errors(include_url=False):
        message = e["msg"].removeprefix("Value error, ")
        if e["loc"]:
            where = ".".join(str(part) for part in (owner, *e["loc"]))
            problems.append(f"{where} = {e['input']!r}: {message}")
        else:  # a rule between settings (a model validator)
            problems.append(f"{owner}: {message}")
    return "; ".join(problems)


def _settings(cls: type) -> type:
    """``cls`` as a frozen pydantic dataclass that refuses unknown keys, whose construction
    raises a one-line ``ValueError`` naming the class, the setting and the bad value (pydantic's
    ``ValidationError`` is a ``ValueError`` too, but spans lines and a web address)."""
    cls = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)
    validated_init = cls.__init__

    @functools.wraps(validated_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validated_init(self, *args, **kwargs)
        except ValidationError as err:
            raise ValueError(_describe(cls.__name__, err)) from None

    cls.__init__ = __init__
    return cls


def _from_dict(cls: type, data: Mapping[str, Any], what: str) -> Any:
    """``cls(**data)``, refusing a key that is not a field of ``cls`` by name."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid: {', '.join(sorted(known))}")
    return cls(**data)


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
RESAMPLE_MODES: tuple[str, ...] = ("ess", "always", "never")
TIME_GRIDS: tuple[str, ...] = ("uniform", "quadratic")
REWARD_AT: tuple[str, ...] = ("x", "xhat0")

# the types of the choices, built from the registries above (a new variant is one entry there)
Variant = Literal[tuple(VARIANTS)]
ResampleMode = Literal[RESAMPLE_MODES]
TimeGrid = Literal[TIME_GRIDS]
RewardAt = Literal[REWARD_AT]


@_settings
class SamplerConfig:
    """Settings of one FKC sampling run (saved as JSON beside what it produced)."""

    variant: Annotated[
        Variant,
        _choice("; ".join(f"{name}: {spec.description}" for name, spec in VARIANTS.items())),
    ] = "fkc"
    n_steps: Annotated[int, _setting("Euler-Maruyama steps from t = 1 to t = t_min", ge=1)] = 100
    lam_max: Annotated[
        float,
        _setting("tilt strength at the data end (the paper's beta)", ge=0, allow_inf_nan=False),
    ] = 1.0
    resample: Annotated[ResampleMode, _choice("when to resample while sampling (fkc only)")] = "ess"
    ess_threshold: Annotated[
        float, _setting("resample when ESS < ess_threshold * N (resample: ess)", gt=0, le=1)
    ] = 0.5
    final_resample: Annotated[
        bool, _setting("fkc: resample once at the end, to equally weighted particles")
    ] = True
    chunk_size: Annotated[
        int | None, _setting("particles per score/reward call; null: all at once", ge=1)
    ] = None
    # Measured on digits, 400 base samples at 50 steps: background-pixel std 0.116 (uniform) vs
    # 0.024 (quadratic), real digits 0.013; validity 90.5 % vs 93.8 % (real 93.3 %).
    time_grid: Annotated[
        TimeGrid, _choice("the time steps: uniform in t, or quadratic (fine near t = 0)")
    ] = "quadratic"
    # last step without noise, then Tweedie at t_min: background std 0.024 -> 0.017
    denoise: Annotated[
        bool, _setting("the last step without noise, then Tweedie's estimate at t_min")
    ] = True
    reward_at: Annotated[
        RewardAt,
        _choice("tilt by r(x_t) (x), or by r(xhat0(x_t)) (xhat0: twisted-SMC weights)"),
    ] = "x"

    #: final forward time of the grid: the score blows up at t = 0
    t_min: ClassVar[float] = 1e-3
    #: the draft paper's clips of its ``draft`` variant (Algorithm 2): |dw| per step, and w
    draft_dw_clip: ClassVar[float] = 0.1
    draft_w_min: ClassVar[float] = 0.1
    draft_w_max: ClassVar[float] = 10.0

    @model_validator(mode="after")
    def _rules_between_settings(self) -> SamplerConfig:
        if self.reward_at == "xhat0" and self.variant == "draft":
            raise ValueError(
                "reward_at 'xhat0' works with the variants 'fkc', 'guidance' and 'base', "
                "not with the draft paper's clipped weights ('draft')"
            )
        return self

    @property
    def tilted(self) -> bool:
        """Whether the drift carries the reward gradient."""
        return VARIANTS[self.variant].tilted and self.lam_max > 0

    @property
    def weighted(self) -> bool:
        """Whether the variant accumulates log-weights."""
        return VARIANTS[self.variant].weighted and self.lam_max > 0

    def lam(self, progress: float) -> float:
        """Tilt strength at sampling progress ``u`` in [0, 1] (``u = 1`` at the last step): a
        straight ramp from 0 to ``lam_max``, and 0 throughout for an untilted sampler (the one
        place the tilt takes its shape within a run; across rounds, the learner's ramp)."""
        if not self.tilted:
            return 0.0
        return self.lam_max * min(1.0, progress)

    def to_dict(self) -> dict:
        """Plain-dict form, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplerConfig:
        """Build from a dict; missing keys take their defaults, unknown keys are an error."""
        return _from_dict(cls, data, "sampler setting")


ARCHS: tuple[str, ...] = ("mlp", "cnn", "gp")
#: The GP surrogate's inputs: the normalised particle as it is, or a fixed random projection.
GP_FEATURES: tuple[str, ...] = ("raw", "projection", "network", "network-raw")
Arch = Literal[ARCHS]
GPFeatures = Literal[GP_FEATURES]


@_settings
class SurrogateConfig:
    """How a surrogate is built and trained (saved in every checkpoint's ``meta.json``).

    The networks' weight decay, minibatch size, noise range of ``noise_train`` and activation
    are constants of :mod:`prefalign.learning.surrogate` (they were settings that no config
    changed); a checkpoint that recorded them still loads.
    """

    # (prefalign.learning.gp; hidden, layers, ensemble, epochs, lr... are the networks' only)
    arch: Annotated[
        Arch,
        _choice("mlp: vectors (d,); cnn: images (C, H, W); gp: a Gaussian process on either"),
    ] = "mlp"
    # small data (tens to hundreds of points)
    hidden: Annotated[int, _setting("MLP width / CNN channels", ge=1)] = 64
    layers: Annotated[
        int, _setting("MLP hidden layers / CNN conv layers (3 convs see an 8x8 image)", ge=1)
    ] = 2
    ensemble: Annotated[
        int,
        _setting("independently initialised members, each on a bootstrap resample if > 1", ge=1),
    ] = 1
    # data sets are small, so fits stay cheap
    epochs: Annotated[int, _setting("passes over the data per fit", ge=1)] = 200
    lr: Annotated[float, _setting("AdamW learning rate", gt=0, allow_inf_nan=False)] = 1e-3
    warm_start: Annotated[
        bool, _setting("start from the previous round's weights (Algorithm 1 'Update CNN')")
    ] = True
    noise_train: Annotated[
        bool, _setting("train on x_t = a_t x + s_t eps (the draft paper: clean data only)")
    ] = False
    # "network" is the last hidden layer of the CNN/MLP surrogate fitted on the same answers: a
    # deep kernel
    features: Annotated[
        GPFeatures,
        _choice(
            "gp: the normalised particle, a fixed random projection, the CNN/MLP surrogate's "
            "last hidden layer, or that layer beside the particle"
        ),
    ] = "raw"
    feature_dim: Annotated[int, _setting("gp: features of the random projection", ge=1)] = 32

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurrogateConfig:
        """Build from a dict; missing keys take their defaults, unknown keys are an error."""
        return _from_dict(cls, data, "surrogate setting")


@_settings
class DDPMTraining:
    """The settings of a DDPM training run that the workflow's ``models.digits`` may set, and
    their defaults: the one place they are written. ``prefalign.models.ddpm.DDPMSettings``
    extends this class (its fields come first, in this order), and the workflow's ``train_digits``
    rule fills the keys a config leaves out from here; importable without torch, so that planning
    the workflow stays fast.

    Defaults: 2,000 steps of 128 images at a peak learning rate of 2e-3, seed 0, two torch
    threads (about 1.5 minutes on a 2-core CPU; base samples as valid as real held-out digits).
    """

    steps: Annotated[int, _setting("optimiser steps", ge=1)] = 2000
    batch_size: Annotated[int, _setting("images per step (drawn with replacement)", ge=1)] = 128
    lr: Annotated[
        float,
        _setting(
            "peak AdamW learning rate (linear warm-up, then cosine decay to 0)",
            gt=0,
            allow_inf_nan=False,
        ),
    ] = 2e-3
    seed: Annotated[
        int, _setting("seeds the initial weights, the batches, the timesteps and the noise", ge=0)
    ] = 0
    # torch CPU threads: a setting, not the machine's cores, because the weights' last digits
    # depend on it (the same value gives the same bytes). Two: the training is the default run's
    # critical path, and on 2 cores its second thread takes the core the other campaigns leave
    # idle (1.4x faster than one thread, measured side by side)
    threads: Annotated[
        int,
        _setting("torch CPU threads of the training (the weights' bytes depend on it)", ge=1),
    ] = 2

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DDPMTraining:
        """Build from a (possibly empty) dict; missing keys take their defaults, unknown keys
        are an error."""
        return _from_dict(cls, data or {}, "DDPM training setting")


#: How the trusted tilt is picked from the frontier's grid: ``std``, the largest tilt whose
#: samples' mean posterior standard deviation of the reward stays within ``max_std``, and never
#: less than the configured tilt (the largest of the grid up to the evaluation sampler's lam_max).
TRUST_RULES: tuple[str, ...] = ("std",)
TrustRule = Literal[TRUST_RULES]


@_settings
class FinalTilt:
    """The sampler the user takes home after the budget: FKC tilted by a potential of the last
    surrogate, evaluated along a grid of tilts (the frontier), at a tilt picked by a rule fixed
    in advance that reads only what the campaign knows (never the user's reward).

    ``pessimism`` is kappa of the potential ``mean - kappa std`` (the surrogate's posterior or
    ensemble spread): regions the answers have not reached are not rewarded. An empty ``lams``
    is one evaluation at the method's own ``lam_max``, as before the frontier.
    """

    pessimism: Annotated[
        float,
        _setting("kappa: tilt by mean - kappa std of the surrogate", ge=0, allow_inf_nan=False),
    ] = 0.0
    lams: Annotated[
        tuple[Annotated[float, _setting(ge=0, allow_inf_nan=False)], ...],
        Field(
            description="the frontier: the final evaluation at each tilt (distinct values)",
            json_schema_extra={"uniqueItems": True},
        ),
    ] = ()
    rule: Annotated[
        TrustRule, _choice("how the trusted tilt is picked from the grid (TRUST_RULES)")
    ] = "std"
    max_std: Annotated[
        float,
        _setting(
            "std rule: the largest tilt whose samples' mean posterior std is at most this, "
            "never below the configured tilt (lam_max)",
            gt=0,
            allow_inf_nan=False,
        ),
    ] = 0.1

    @field_validator("lams")
    @classmethod
    def _distinct(cls, lams: tuple[float, ...]) -> tuple[float, ...]:
        if len(set(lams)) != len(lams):
            raise ValueError("a tilt repeats")
        return lams

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
Mode = Literal[MODES]


@_settings
class FinetuneSettings:
    """Settings of one fine-tuning run of the base model."""

    mode: Annotated[
        Mode, _choice("every weight, every weight at t >= t_split, or low-rank adapters")
    ] = "full"
    steps: Annotated[int, _setting("optimiser steps", ge=1)] = 400
    batch_size: Annotated[
        int, _setting("examples per step (drawn with replacement, by weight)", ge=1)
    ] = 64
    lr: Annotated[
        float,
        _setting(
            "AdamW learning rate (constant after a 10 % linear warm-up)",
            gt=0,
            allow_inf_nan=False,
        ),
    ] = 1e-3
    t_split: Annotated[
        float,
        _setting(
            "split mode: the forward time from which the fine-tuned network is trained and "
            "used; below it the base model denoises",
            ge=0,
            lt=1,
        ),
    ] = 0.5
    # theta -= lr decay (theta - theta_base)
    decay: Annotated[
        float,
        _setting(
            "pull of the weights back toward the base model's, per step (lora: of the "
            "adapters toward the zero update)",
            ge=0,
            allow_inf_nan=False,
        ),
    ] = 0.0
    lora_rank: Annotated[int, _setting("rank of the adapters (lora)", ge=1)] = 4
    dpo_beta: Annotated[
        float,
        _setting(
            "inverse temperature of the Diffusion-DPO loss (d3po), on per-value mean squared "
            "errors",
            gt=0,
            allow_inf_nan=False,
        ),
    ] = 2000.0
    particles: Annotated[
        int, _setting("samples of the aligned sampler drawn to distil it (finetune rule)", ge=1)
    ] = 512
    seed: Annotated[int, _setting("seeds the batches, timesteps and noise", ge=0)] = 0

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
