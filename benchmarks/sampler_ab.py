"""A/B check of a change to the sampler: the current ``prefalign.sampling`` against a reference
copy of the sampler module (e.g. ``git show 679249c:src/prefalign/fkc.py > /tmp/fkc_ref.py``, the
one-file sampler before the ``sampling`` package).

1. Bit-identity: every variant x chunking x resampling mode x tilt x time
   grid x final denoising x reward at x or x̂0, on mixture2d (and, unless ``--no-digits``, a few on digits with a CNN surrogate), same seed; every
   field of the result (particles, weights, path weights, ESS, counts) must be equal, sign of
   zero included.
2. Speed: both samplers timed side by side (interleaved repetitions, medians), as a ratio.

Usage: python benchmarks/sampler_ab.py --reference /tmp/fkc_ref.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_OUT, digits_model, fitted_surrogate, interleaved, median  # noqa: E402

FIELDS = ("x", "log_weights", "path_log_weights", "ess", "lam")
COUNTS = ("n_resamples", "n_score_evals", "n_reward_evals")


def load_reference(path: Path) -> ModuleType:
    """Import a copy of ``fkc.py`` from ``path`` as the module ``fkc_reference`` (its
    ``prefalign.sde`` and ``prefalign.progress`` imports resolved to today's modules)."""
    import prefalign.io.progress
    import prefalign.models.sde

    sys.modules.setdefault("prefalign.sde", prefalign.models.sde)
    sys.modules.setdefault("prefalign.progress", prefalign.io.progress)
    spec = importlib.util.spec_from_file_location("fkc_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fkc_reference"] = module
    spec.loader.exec_module(module)
    return module


def identical(a, b) -> bool:
    """Every tensor field equal bit for bit (``-0.0`` vs ``0.0`` too) and every count equal."""
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not torch.equal(x, y) or not torch.equal(x.signbit(), y.signbit()):
            return False
    return all(getattr(a, c) == getattr(b, c) for c in COUNTS)


def _draw(module: ModuleType, domain, reward, n: int, config, seed: int):
    """``module.sample`` of ``n`` particles of ``domain`` tilted by ``reward``, seeded."""
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(domain.event_shape)
    return module.sample(
        domain.score, domain.sde, n, shape, reward=reward, config=config, generator=generator
    )


def check_identity(reference: ModuleType, domain, reward, grid: dict, n: int, steps: int) -> int:
    """Run every combination of ``grid`` with both samplers; returns the number that differ."""
    from prefalign import sampling
    from prefalign.settings import SamplerConfig

    differ = 0
    keys = list(grid)
    for values in itertools.product(*grid.values()):
        try:
            config = SamplerConfig(n_steps=steps, **dict(zip(keys, values, strict=True)))
        except ValueError:  # a combination the settings refuse (x̂0 with the draft's weights)
            continue
        out = [_draw(module, domain, reward, n, config, 3) for module in (reference, sampling)]
        if not identical(*out):
            differ += 1
            print(f"  DIFFERS: {config}")
    return differ


def _n_valid(grid: dict) -> int:
    """The combinations of ``grid`` that the settings accept."""
    from prefalign.settings import SamplerConfig

    n = 0
    for values in itertools.product(*grid.values()):
        try:
            SamplerConfig(**dict(zip(grid, values, strict=True)))
        except ValueError:
            continue
        n += 1
    return n


def time_both(reference: ModuleType, domain, reward, n: int, steps: int, repeats: int) -> dict:
    """Median wall time of one fkc round with each sampler, side by side."""
    from prefalign import sampling
    from prefalign.settings import SamplerConfig

    config = SamplerConfig(variant="fkc", n_steps=steps, lam_max=8.0)

    def run(module: ModuleType):
        return lambda: _draw(module, domain, reward, n, config, 0)

    times = interleaved({"reference": run(reference), "current": run(sampling)}, repeats)
    return {k: median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a copy of fkc.py")
    parser.add_argument("--quick", action="store_true", help="fewer configurations and repeats")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = load_reference(args.reference)

    from prefalign.domains import get_domain

    mixture = get_domain("mixture2d")
    mlp = fitted_surrogate(mixture, "mixture2d", n=64, steps=20)
    grid = {
        "variant": ["fkc", "draft", "guidance", "base"],
        "chunk_size": [None, 100, 64],
        "resample": ["ess", "always", "never"],
        "lam_max": [0.0, 8.0],
        "time_grid": ["uniform", "quadratic"],
        "denoise": [False, True],
        "reward_at": ["x", "xhat0"],
    }
    if args.quick:
        grid.update(chunk_size=[None, 64], resample=["ess"])
    n_configs = _n_valid(grid)
    print(f"bit-identity, mixture2d (MLP surrogate, N=300, 30 steps): {n_configs} configurations")
    differ = check_identity(reference, mixture, mlp, grid, 300, 30)
    print(f"  {n_configs - differ} identical, {differ} differ")
    cases = [("mixture2d", mixture, mlp, 4096, 100, 3 if args.quick else 9)]
    if not args.no_digits:
        digits = get_domain("digits", {"model_dir": str(digits_model(args.out, quick=args.quick))})
        cnn = fitted_surrogate(digits, "digits", n=64, steps=20)
        small = {
            "variant": ["fkc", "draft", "base"],
            "chunk_size": [None, 16],
            "lam_max": [8.0],
            "reward_at": ["x", "xhat0"],
        }
        n_small = _n_valid(small)
        print(f"bit-identity, digits (CNN surrogate, N=40, 10 steps): {n_small} configurations")
        d = check_identity(reference, digits, cnn, small, 40, 10)
        print(f"  {n_small - d} identical, {d} differ")
        differ += d
        cases.append(("digits", digits, cnn, 256, 100, 2 if args.quick else 5))
    for name, domain, reward, n, steps, repeats in cases:
        t = time_both(reference, domain, reward, n, steps, repeats)
        print(
            f"speed, one fkc round, {name} N={n} steps={steps} ({repeats} repeats): reference "
            f"{t['reference']:.3f} s, current {t['current']:.3f} s -> current/reference = "
            f"{t['current'] / t['reference']:.3f}"
        )
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
