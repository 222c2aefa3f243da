"""The sampler's time grid and tilt schedule: where the steps fall and how strong the tilt is."""

from __future__ import annotations

from prefalign.settings import SamplerConfig


def time_grid(config: SamplerConfig) -> list[float]:
    """The ``n_steps + 1`` forward times ``1 = t_0 > t_1 > ... > t_n = t_min`` of the sampler.

    ``uniform``: equal steps in t. ``quadratic``: ``t_i = t_min + (1 - t_min) (1 - i/n)^2``, steps
    shrinking linearly towards the data end, where the noise added by an Euler–Maruyama step on a
    uniform grid is far larger than the marginal's own ``s_t`` (fkc-math.md, "The last step").
    """
    n, span = config.n_steps, 1.0 - config.t_min
    if config.time_grid == "quadratic":
        return [config.t_min + span * (1.0 - i / n) ** 2 for i in range(n)] + [config.t_min]
    dtau = span / n
    return [1.0 - i * dtau for i in range(n)] + [config.t_min]


def tilt_schedule(config: SamplerConfig, grid: list[float]) -> list[float]:
    """``lam`` at the pre-step time of each step: ``config.lam(u)`` with ``u`` the sampling
    progress in time, 0 at t = 1 and 1 at the last step's pre-step time."""
    steps = config.n_steps
    if config.time_grid == "uniform":  # i / (n - 1) exactly, as the grid is uniform
        return [config.lam(i / max(steps - 1, 1)) for i in range(steps)]
    last = 1.0 - grid[steps - 1]
    return [config.lam((1.0 - grid[i]) / last if last > 0 else 1.0) for i in range(steps)]
