"""Sampling from the base model and from its reward-tilted targets.

- :mod:`.sde`: the VP SDE of fkc-math.md;
- :mod:`.step`: one FKC step (Algorithm 2 as corrected), :func:`fkc_step`, and the two halves of
  the step with the reward at the denoised estimate;
- :mod:`.schedule`: the time grid and the tilt schedule;
- :mod:`.resampling`: effective sample size and systematic resampling;
- :mod:`.sampler`: :func:`sample`, the one SMC kernel over the steps, and :class:`SampleResult`.

The variants (``fkc``, ``draft``, ``guidance``, ``base``) are :data:`prefalign.settings.VARIANTS`.
"""

from prefalign.models.sde import VPSDE
from prefalign.sampling.resampling import effective_sample_size, systematic_resample
from prefalign.sampling.sampler import SampleResult, sample
from prefalign.sampling.schedule import tilt_schedule, time_grid
from prefalign.sampling.step import FKCStepOutput, fkc_step, tweedie
from prefalign.settings import VARIANTS, SamplerConfig

__all__ = [
    "VARIANTS",
    "VPSDE",
    "FKCStepOutput",
    "SampleResult",
    "SamplerConfig",
    "effective_sample_size",
    "fkc_step",
    "sample",
    "systematic_resample",
    "tilt_schedule",
    "time_grid",
    "tweedie",
]
