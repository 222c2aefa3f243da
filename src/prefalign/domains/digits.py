"""The digits domain: a small DDPM on scikit-learn's 8x8 digits, simulated users, validity.

Data. ``sklearn.datasets.load_digits`` (1,797 images of 8x8 pixels, values 0..16, bundled with
scikit-learn: nothing is downloaded) scaled to [-1, 1] by ``v / 8 - 1``, shape (1, 8, 8). No
padding or resizing: a two-level UNet (8x8 -> 4x4) trains well at the native size (its samples are
as often valid as real digits), and padding to 16x16 would quadruple the cost per step on the 2-core
CPU this is sized for.

Splits. Each class is shuffled with ``numpy.random.default_rng(SPLIT_SEED)`` and cut by
``SPLIT_FRACTIONS`` (stratified, disjoint, fixed):

============  =====  ==================================================================
split         share  used for
============  =====  ==================================================================
ddpm          45 %   training the base DDPM
oracle        20 %   the optimisation oracle's classifier (MLP) and its ink reference
validity      10 %   the validity classifier (logistic regression), PCA manifold, ink range
evaluation    15 %   the evaluation oracle's classifier (logistic regression)
heldout       10 %   real digits no model saw: the validity rate of real data
============  =====  ==================================================================

The validity test and the evaluation oracle never share data with the optimisation oracle, and use a
different model family (linear vs MLP), so hacking the optimisation oracle's classifier shows.

Simulated users (:func:`make_oracle`), black boxes on numpy arrays (N, 1, 8, 8); they see what a
person sees in the rendering (pixels clipped to [-1, 1], NaN as mid-grey):

- ``digit-K``: probability of digit K (0..9) under the oracle classifier.
- ``thick``: boldness, the percentile of the image's mean ink ``mean((x + 1) / 2)`` among the oracle
  split's real digits (0 = thinnest real digit, 1 = boldest; monotone, saturates beyond real data).
- ``thick-K``: ``digit-K * thick`` ("thick threes" is ``thick-3``, the default preference).
- the other styles, each a percentile among the oracle split's real digits like ``thick`` (and
  ``<style>-K``: ``digit-K * <style>``): ``thin`` (the least ink: ``1 - thick``), ``slant`` (how
  far the strokes lean to the right: minus the ink-weighted covariance of row and column over
  the variance of the row), ``wide`` (the ink-weighted standard deviation of the column).
- ``eval-digit-K``, ``eval-<style>``, ``eval-<style>-K``: the same with the evaluation
  classifier.

Each noiseless user also has ``.torch``, the same function in torch (the fitted classifiers'
weights re-evaluated, the percentile as the same piecewise-linear interpolation), differentiable
in the samples: the ``true-reward`` upper bound tilts FKC by it.

Rarity under the default base model (512 samples, 100 Euler-Maruyama steps): ``thick-3 > 0.9``
for 0.6 % of samples (0 % of real held-out digits), ``thick-K > 0.9`` 0-1 % for every K,
``digit-K > 0.9`` 5-11 % (too common to be a hard preference), ``thick > 0.9`` 6 %. Hence the
default preference ``thick-3``. The users of the study (issue 26) are three kinds, each rare:
``thick-3``, ``slant-7`` and ``wide-1`` (``config/paper.yaml``; their rarity is measured by
``benchmarks/users.py`` and quoted in ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefalign.domains import with_answer_noise
from prefalign.domains.base import OracleFn
from prefalign.settings import DDPMTraining

# torch and diffusers are imported only where the diffusion model is needed (training, the
# domain's score): the oracle command and the validity test start without them. scikit-learn
# (1-2.5 s to import) only where the data or the classifiers are: sampling needs neither.
if TYPE_CHECKING:
    import torch
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from prefalign.models.ddpm import UNetScore
    from prefalign.models.sde import VPSDE

EVENT_SHAPE: tuple[int, int, int] = (1, 8, 8)
SPLIT_SEED = 0
SPLIT_FRACTIONS: dict[str, float] = {
    "ddpm": 0.45,
    "oracle": 0.20,
    "validity": 0.10,
    "evaluation": 0.15,
    "heldout": 0.10,
}
DEFAULT_ORACLE = "thick-3"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitData:
    """One split of the digits.

    Attributes:
        images: (N, 1, 8, 8) float32 in [-1, 1] (read-only).
        labels: (N,) int64 digit classes (read-only).
        index: (N,) positions in ``load_digits()`` (read-only).
    """

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    @property
    def flat(self) -> np.ndarray:
        """Images as (N, 64) pixel vectors."""
        return self.images.reshape(len(self.images), -1)


@functools.cache
def digit_splits() -> dict[str, DigitData]:
    """The fixed, stratified, disjoint splits of ``load_digits`` (see the module docstring)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 8.0 - 1.0)[:, None]  # (1797, 1, 8, 8)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    members: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_FRACTIONS}
    bounds = np.cumsum(list(SPLIT_FRACTIONS.values()))
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(labels == digit))
        cuts = np.round(bounds * len(index)).astype(int)
        for name, start, stop in zip(SPLIT_FRACTIONS, np.r_[0, cuts[:-1]], cuts, strict=True):
            members[name].append(index[start:stop])
    splits = {}
    for name, parts in members.items():
        index = np.sort(np.concatenate(parts))
        data = DigitData(images=images[index], labels=labels[index], index=index)
        for array in (data.images, data.labels, data.index):
            array.setflags(write=False)
        splits[name] = data
    return splits


def digit_split(name: str) -> DigitData:
    """One split by name; raises ``ValueError`` listing the valid names."""
    splits = digit_splits()
    if name not in splits:
        raise ValueError(f"unknown digits split {name!r}; must be one of {', '.join(splits)}")
    return splits[name]


def _fingerprint(data: DigitData) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data.images).tobytes())
    digest.update(np.ascontiguousarray(data.labels).tobytes())
    return f"sklearn-digits:ddpm-split:sha256={digest.hexdigest()[:16]}"


def train_digits_ddpm(
    out_dir: str | Path,
    *,
    steps: int = DDPMTraining.steps,
    batch_size: int = DDPMTraining.batch_size,
    lr: float = DDPMTraining.lr,
    seed: int = DDPMTraining.seed,
    threads: int = DDPMTraining.threads,
    progress: bool = True,
) -> Path:
    """Train the digits base DDPM on the ``ddpm`` split and save it to ``out_dir``.

    A diffusers ``UNet2DModel`` (channels (32, 64), one ResNet layer per block, no attention,
    0.65 M parameters) with a ``DDPMScheduler`` (1000 linear betas 1e-4 .. 0.02, epsilon
    prediction); AdamW with warm-up and cosine decay; the EMA (0.999) of the weights is saved.
    If ``out_dir`` already holds a model trained with the same settings on the same data, it is
    returned without retraining.

    Cost and quality of the defaults (2,000 steps of 128): 272 s on one torch thread of a 2-core
    Intel Xeon with both cores busy (136 ms a step, 2026-12-02; the default's two threads are
    1.4x faster); base samples (512, 100 Euler-Maruyama steps) are 92.6 % valid, like real
    held-out digits (93.3 %).
    Call ``torch.set_num_threads(1)`` first on a busy 2-core machine: with 2 threads competing with
    other processes a step took 650 ms instead of 90 ms.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    import torch

    from prefalign.models.ddpm import DDPMSettings, train_ddpm

    settings = DDPMSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed, threads=threads)
    data = digit_split("ddpm")
    return train_ddpm(
        torch.from_numpy(np.array(data.images)),
        out_dir,
        settings,
        data_fingerprint=_fingerprint(data),
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# Classifiers, ink and validity (all fitted deterministically, once per process)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValiditySettings:
    """Thresholds of :func:`is_valid` (see its docstring for the reasoning).

    Attributes:
        max_abs_pixel: every pixel must satisfy ``|x| <= max_abs_pixel`` (real digits: 1).
        ink_margin: mean ink may leave the validity split's [min, max] by this share of its width.
        pca_components: principal components of the validity split spanning the digit manifold.
        residual_quantile: residual threshold = this quantile of out-of-fold residuals of real
            digits (5 folds), so the check keeps about that share of unseen real digits.
        min_confidence: the validity classifier's top class probability must reach this.
    """

    max_abs_pixel: float = 1.5
    ink_margin: float = 0.25
    pca_components: int = 12
    residual_quantile: float = 0.99
    min_confidence: float = 0.5


VALIDITY = ValiditySettings()


def _pixels(x: np.ndarray) -> np.ndarray:
    """Samples (N, 1, 8, 8) or (N, 64) -> (N, 64) float64, as shown to a person (clipped)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != 64:
        raise ValueError(f"digits samples must have shape (N, 1, 8, 8), got {x.shape}")
    x = x.reshape(len(x), 64)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def ink(x: np.ndarray) -> np.ndarray:
    """Mean ink (N,): the mean of ``(x + 1) / 2`` over the 64 clipped pixels, in [0, 1]."""
    return ((_pixels(x) + 1.0) / 2.0).mean(axis=1)


@dataclass(frozen=True)
class DigitModels:
    """The fitted classifiers and references of the digits domain."""

    oracle: MLPClassifier  # optimisation oracle, fitted on the ``oracle`` split
    evaluation: LogisticRegression  # evaluation oracle, fitted on the ``evaluation`` split
    validity: LogisticRegression  # validity classifier, fitted on the ``validity`` split
    manifold: PCA  # principal subspace of the ``validity`` split
    residual_threshold: float  # max distance to that subspace
    ink_range: tuple[float, float]  # allowed mean ink
    ink_reference: np.ndarray  # sorted mean inks of the ``oracle`` split (for ``thick``)
    # sorted style features of the ``oracle`` split: the percentile of each style user
    style_references: dict[str, np.ndarray]


def _residual(pca: PCA, x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x - pca.inverse_transform(pca.transform(x)), axis=1)


@functools.cache
def digit_models() -> DigitModels:
    """Fit (once per process, deterministically, in about a second) every digits classifier."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    oracle_data, validity_data, evaluation_data = (
        digit_split(name) for name in ("oracle", "validity", "evaluation")
    )
    oracle = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=2000, random_state=0)
    oracle.fit(oracle_data.flat, oracle_data.labels)
    evaluation = LogisticRegression(C=1.0, max_iter=5000)
    evaluation.fit(evaluation_data.flat, evaluation_data.labels)
    validity = LogisticRegression(C=1.0, max_iter=5000)
    validity.fit(validity_data.flat, validity_data.labels)

    # out-of-fold residuals calibrate the manifold threshold on digits the PCA did not see
    x, y = validity_data.flat.astype(np.float64), validity_data.labels
    residuals = np.empty(len(x))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(x, y):
        pca = PCA(VALIDITY.pca_components, random_state=0).fit(x[train])
        residuals[test] = _residual(pca, x[test])
    manifold = PCA(VALIDITY.pca_components, random_state=0).fit(x)

    inks = ink(validity_data.flat)
    width = inks.max() - inks.min()
    return DigitModels(
        oracle=oracle,
        evaluation=evaluation,
        validity=validity,
        manifold=manifold,
        residual_threshold=float(np.quantile(residuals, VALIDITY.residual_quantile)),
        ink_range=(
            float(inks.min() - VALIDITY.ink_margin * width),
            float(inks.max() + VALIDITY.ink_margin * width),
        ),
        ink_reference=np.sort(ink(oracle_data.flat)),
        style_references={
            name: np.sort(style.feature(oracle_data.flat)) for name, style in STYLES.items()
        },
    )


def validity_checks(x: np.ndarray) -> dict[str, np.ndarray]:
    """Each check of :func:`is_valid` separately: name -> boolean (N,)."""
    raw = np.asarray(x, dtype=np.float64)
    pixels = _pixels(raw)
    raw = raw.reshape(len(raw), -1)
    models = digit_models()
    finite = np.isfinite(raw).all(axis=1)
    lo, hi = models.ink_range
    mean_ink = ink(pixels)
    return {
        "finite": finite,
        "range": finite & (np.abs(np.nan_to_num(raw)) <= VALIDITY.max_abs_pixel).all(axis=1),
        "ink": (mean_ink >= lo) & (mean_ink <= hi),
        "manifold": _residual(models.manifold, pixels) <= models.residual_threshold,
        "confident": models.validity.predict_proba(pixels).max(axis=1) >= VALIDITY.min_confidence,
    }


def is_valid(x: np.ndarray) -> np.ndarray:
    """Whether each sample (N, 1, 8, 8) looks like a digit: boolean (N,).

    All of, with :data:`VALIDITY` thresholds:

    1. ``finite`` and ``range``: finite pixels within [-1.5, 1.5] (real digits lie in [-1, 1];
       samples overshoot a little, reward-hacked ones a lot).
    2. ``ink``: mean ink within the validity split's range, widened by 25 % (rejects blank and
       filled images).
    3. ``manifold``: distance to the 12-dimensional principal subspace of the validity split at most
       its 99 % out-of-fold quantile (rejects noise, shifted and other off-manifold images; keeps
       ~99 % of unseen real digits).
    4. ``confident``: the independent validity classifier (logistic regression, own split) gives
       its top class a probability >= 0.5, i.e. the image is one unambiguous digit (rejects about
       half of pixel averages of two different digits, which lie on the linear manifold).

    About 93 % of real held-out digits pass; uniform noise never does.
    """
    return np.logical_and.reduce(list(validity_checks(x).values()))


# ---------------------------------------------------------------------------------------------
# Simulated users
# ---------------------------------------------------------------------------------------------


def _classifier(models: DigitModels, evaluation: bool):
    return models.evaluation if evaluation else models.oracle


def _moments(pixels, xp):
    """Ink-weighted centred moments of (N, 64) clipped pixels (numpy or torch, by ``xp``):
    ``(var_row, var_col, cov_row_col)``, rows counted from the top."""
    weights = (pixels + 1.0) / 2.0
    total = weights.sum(1) + 1e-6
    grid = xp.arange(64)
    if xp is np:
        rows, cols = (grid // 8).astype(np.float64), (grid % 8).astype(np.float64)
    else:
        rows = (grid // 8).to(pixels.dtype).to(pixels.device)
        cols = (grid % 8).to(pixels.dtype).to(pixels.device)
    mean_row = (weights * rows).sum(1) / total
    mean_col = (weights * cols).sum(1) / total
    d_row = rows[None, :] - mean_row[:, None]
    d_col = cols[None, :] - mean_col[:, None]
    var_row = (weights * d_row**2).sum(1) / total
    var_col = (weights * d_col**2).sum(1) / total
    cov = (weights * d_row * d_col).sum(1) / total
    return var_row, var_col, cov


@dataclass(frozen=True)
class Style:
    """A style a simulated user can like: a feature of the pixels, in numpy and torch; the user
    scores its percentile among the oracle split's real digits."""

    numpy: object  # (N, 64) clipped pixels -> (N,)
    torch: object  # the same on torch tensors, differentiable
    description: str

    def feature(self, x: np.ndarray) -> np.ndarray:
        """The style's feature (N,) of digits samples (N, 1, 8, 8) or (N, 64)."""
        return self.numpy(_pixels(x))


STYLES: dict[str, Style] = {
    "thick": Style(
        lambda p: ((p + 1.0) / 2.0).mean(axis=1),
        lambda p: ((p + 1.0) / 2.0).mean(dim=1),
        "bold: the mean ink",
    ),
    "thin": Style(
        lambda p: -((p + 1.0) / 2.0).mean(axis=1),
        lambda p: -((p + 1.0) / 2.0).mean(dim=1),
        "light: the least mean ink",
    ),
    "slant": Style(
        lambda p: -_moments(p, np)[2] / (_moments(p, np)[0] + 1e-6),
        lambda p: -_torch_moments(p)[2] / (_torch_moments(p)[0] + 1e-6),
        "leaning right: minus the covariance of row and column over the row's variance",
    ),
    "wide": Style(
        lambda p: np.sqrt(_moments(p, np)[1] + 1e-6),
        lambda p: (_torch_moments(p)[1] + 1e-6).sqrt(),
        "wide: the standard deviation of the ink's column",
    ),
}


def _torch_moments(pixels):
    import torch

    return _moments(pixels, torch)


def style_percentile(x: np.ndarray, style: str) -> np.ndarray:
    """``<style>`` (N,) in [0, 1]: the percentile of the style's feature among the oracle
    split's digits (0 = least, 1 = most; monotone, saturating beyond real data)."""
    reference = digit_models().style_references[style]
    return np.interp(STYLES[style].feature(x), reference, np.linspace(0.0, 1.0, len(reference)))


def thickness(x: np.ndarray) -> np.ndarray:
    """``thick`` (N,) in [0, 1]: percentile of the mean ink among the oracle split's digits."""
    return style_percentile(x, "thick")


def digit_probability(x: np.ndarray, digit: int, *, evaluation: bool = False) -> np.ndarray:
    """Probability (N,) of class ``digit`` under the oracle (or evaluation) classifier."""
    if digit not in range(10):
        raise ValueError(f"digit must be one of 0..9, got {digit}")
    return _classifier(digit_models(), evaluation).predict_proba(_pixels(x))[:, digit]


def _torch_pixels(x: torch.Tensor) -> torch.Tensor:
    """:func:`_pixels` in torch: (N, 1, 8, 8) -> (N, 64), clipped to [-1, 1]."""
    import torch

    return torch.clamp(x.reshape(len(x), 64), -1.0, 1.0)


def _torch_digit_probability(x: torch.Tensor, digit: int, *, evaluation: bool) -> torch.Tensor:
    """:func:`digit_probability` as a differentiable torch function of the samples.

    The fitted scikit-learn classifiers are re-evaluated with their own weights: the oracle's MLP
    (ReLU hidden layers, softmax output) and the evaluation's multinomial logistic regression.
    """
    import torch
    from sklearn.neural_network import MLPClassifier  # imported by digit_models already

    h = _torch_pixels(x)
    classifier = _classifier(digit_models(), evaluation)
    dtype, device = h.dtype, h.device

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    if isinstance(classifier, MLPClassifier):
        if classifier.activation != "relu" or classifier.out_activation_ != "softmax":
            raise NotImplementedError("only ReLU MLPs with a softmax output are mirrored in torch")
        layers = list(zip(classifier.coefs_, classifier.intercepts_, strict=True))
        for i, (w, b) in enumerate(layers):
            h = h @ tensor(w) + tensor(b)
            if i < len(layers) - 1:
                h = torch.relu(h)
    else:
        h = h @ tensor(classifier.coef_).T + tensor(classifier.intercept_)
    return torch.softmax(h, dim=1)[:, digit]


def _torch_style_percentile(x: torch.Tensor, style: str) -> torch.Tensor:
    """:func:`style_percentile` in torch: the same piecewise-linear percentile (``np.interp``)."""
    import torch

    reference = digit_models().style_references[style]
    reference = torch.as_tensor(reference, dtype=x.dtype, device=x.device)
    levels = torch.linspace(0.0, 1.0, len(reference), dtype=x.dtype, device=x.device)
    value = STYLES[style].torch(_torch_pixels(x))
    # the segment [reference[j], reference[j + 1]] holding each value, as np.interp picks it
    j = (torch.searchsorted(reference, value.detach(), right=True) - 1).clamp(0, len(reference) - 2)
    x0, x1, y0, y1 = reference[j], reference[j + 1], levels[j], levels[j + 1]
    width = x1 - x0
    share = torch.where(width > 0, (value - x0) / torch.where(width > 0, width, 1.0), 1.0)
    return y0 + share.clamp(0.0, 1.0) * (y1 - y0)


def _torch_thickness(x: torch.Tensor) -> torch.Tensor:
    """:func:`thickness` in torch."""
    return _torch_style_percentile(x, "thick")


def oracle_names() -> list[str]:
    """The simulated users: ``digit-K``, each style of :data:`STYLES` (``thick``, ``thin``,
    ``slant``, ``wide``) alone and times a digit (``thick-K``, ...), ``set-1479`` (any set of
    distinct digits, ``set-KLM...``: the probability that the digit is one of them; PAPA's
    user likes {1, 4, 7, 9}) and their ``eval-`` versions. Listed: every one but the sets other
    than ``set-1479``."""
    names = [f"digit-{k}" for k in range(10)]
    for style in STYLES:
        names += [style] + [f"{style}-{k}" for k in range(10)]
    names.append("set-1479")
    return names + [f"eval-{name}" for name in names]


def _reward_fn(name: str, *, differentiable: bool = False):
    """The noiseless reward function called ``name``: on numpy arrays, or (``differentiable``)
    its torch mirror built from :func:`_torch_digit_probability` and :func:`_torch_thickness`."""
    evaluation = name.startswith("eval-")
    base = name.removeprefix("eval-")
    percentile = _torch_style_percentile if differentiable else style_percentile
    probability = _torch_digit_probability if differentiable else digit_probability
    if base in STYLES:
        return lambda x: percentile(x, base)
    kind, _, digit = base.partition("-")
    if (kind == "digit" or kind in STYLES) and digit.isdigit() and int(digit) in range(10):
        k = int(digit)
        if kind == "digit":
            return lambda x: probability(x, k, evaluation=evaluation)
        return lambda x: probability(x, k, evaluation=evaluation) * percentile(x, kind)
    if kind == "set" and digit.isdigit() and len(set(digit)) == len(digit):
        ks = [int(d) for d in digit]
        return lambda x: sum(probability(x, k, evaluation=evaluation) for k in ks)
    raise ValueError(
        f"unknown digits oracle {name!r}; must be one of digit-K, a style ("
        f"{', '.join(STYLES)}), a style-K (K in 0..9), set-KL... (distinct digits), optionally "
        "prefixed by 'eval-'"
    )


def make_oracle(name: str, *, noise_std: float = 0.0, seed: int = 0) -> OracleFn:
    """The simulated user ``name`` (see :func:`oracle_names`): np (N, 1, 8, 8) -> rewards (N,).

    Args:
        name: e.g. ``thick-3``, ``digit-7``, ``eval-thick-3``.
        noise_std: standard deviation of Gaussian noise added to each answer (0: exact).
        seed: seeds the answer noise (see :func:`answer_noise`).
    """
    oracle = with_answer_noise(
        _reward_fn(name), noise_std, seed, f"digits_{name.replace('-', '_')}"
    )
    if noise_std == 0:  # the exact user is differentiable: `true-reward` tilts by it
        oracle.torch = _reward_fn(name, differentiable=True)  # type: ignore[attr-defined]
    return oracle


# ---------------------------------------------------------------------------------------------
# Diversity
# ---------------------------------------------------------------------------------------------


def diversity(x: np.ndarray, max_pairs_samples: int = 1024) -> dict[str, float]:
    """Diversity of a batch (N, 1, 8, 8).

    Returns:
        ``n_classes``: distinct digits predicted by the evaluation classifier;
        ``class_entropy``: entropy of those predictions in bits (log2 10 = 3.32 for uniform);
        ``mean_pairwise_l2``: mean L2 distance between distinct samples (clipped pixels; the
        first ``max_pairs_samples`` samples only, to bound the cost).
    """
    pixels = _pixels(x)
    if len(pixels) == 0:
        return {"n_classes": 0.0, "class_entropy": 0.0, "mean_pairwise_l2": 0.0}
    predicted = digit_models().evaluation.predict(pixels)
    counts = np.bincount(predicted, minlength=10).astype(np.float64)
    share = counts[counts > 0] / counts.sum()
    sub = pixels[:max_pairs_samples]
    sq = (sub**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * sub @ sub.T, 0.0))
    n = len(sub)
    mean_l2 = float(dist.sum() / (n * (n - 1))) if n > 1 else 0.0
    return {
        "n_classes": float((counts > 0).sum()),
        "class_entropy": float(-(share * np.log2(share)).sum()),
        "mean_pairwise_l2": mean_l2,
    }


# ---------------------------------------------------------------------------------------------
# The domain
# ---------------------------------------------------------------------------------------------


class DigitsDomain:
    """8x8 digits with a DDPM trained by :func:`train_digits_ddpm` (implements ``Domain``).

    Args:
        model_dir: directory written by :func:`train_digits_ddpm`.
        device: torch device of the UNet; ``score`` expects ``x`` on it.

    Raises:
        ModelLoadError: ``model_dir`` is missing or corrupt, or not an 8x8 one-channel model.
    """

    name = "digits"
    event_shape: tuple[int, ...] = EVENT_SHAPE

    def __init__(self, model_dir: str | Path, device: torch.device | str = "cpu") -> None:
        from prefalign.models.ddpm import ModelLoadError, UNetScore, load_noise_schedule, load_unet

        self.model_dir = Path(model_dir)
        unet = load_unet(self.model_dir, device=device)
        size, channels = unet.config.sample_size, unet.config.in_channels
        if channels != 1 or size not in (8, [8, 8], (8, 8)):
            raise ModelLoadError(
                f"model in {str(self.model_dir)!r} makes {channels}-channel images of size {size}; "
                "the digits domain needs 1 channel of 8x8"
            )
        self._score = UNetScore(unet, load_noise_schedule(self.model_dir))
        self.sde: VPSDE = self._score.sde

    @property
    def noise_model(self) -> UNetScore:
        """The base UNet with its schedule (what :mod:`prefalign.finetune` fine-tunes)."""
        return self._score

    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """``grad log q_t(x) = -eps_hat(x, t (T-1)) / s_t`` for x of shape (N, 1, 8, 8)."""
        return self._score(x, t)

    def oracle_names(self) -> list[str]:
        """See :func:`oracle_names`."""
        return oracle_names()

    # the users, the validity check and the diversity are this module's functions
    oracle = staticmethod(make_oracle)
    is_valid = staticmethod(is_valid)
    diversity = staticmethod(diversity)

    def reference_samples(self) -> np.ndarray:
        """Real held-out digits (no model saw them), to compare the base model's samples with."""
        return np.array(digit_split("heldout").images)


#: This module's domain (:mod:`prefalign.domains`).
DOMAIN = DigitsDomain
