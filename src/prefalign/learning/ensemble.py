"""The network surrogate: an ensemble of MLPs or CNNs, :class:`Surrogate`, and its fit
(:func:`fit_ensemble`), with what every surrogate shares (the answers' checks, heads,
normalisation, :class:`FitReport`). :mod:`prefalign.learning.surrogate` chooses between it and
the Gaussian process (:mod:`prefalign.learning.gp`).

The surrogate normalises its input and de-standardises its output inside ``forward``::

    r(x) = y_mean + y_std * mean_e f_e((x - x_mean) / x_std)

so ``surrogate(x)`` is in the oracle's units and ``grad_x sum(r(x))`` is what the sampler needs.

That is the ``rate`` head, fitted by least squares to ratings. Answers in the other question
forms (:mod:`prefalign.io.feedback`) are fitted by their likelihoods on the same networks, and the
output is put on the [0, 1] scale of the domains' ratings, so that the sampler's tilt strength
``lam_max`` means the same in every form:

- ``binary`` (like/dislike, logistic regression on the member's logit ``f``):
  ``r(x) = mean_e sigmoid(f_e(x))``, the probability that the user likes ``x``;
- ``choice`` (``pairwise``: Bradley-Terry, ``best-of-K``: Plackett-Luce's first choice, both the
  cross-entropy of ``softmax(f)`` over a question's items against the answer; a pairwise tie is
  half a win each): ``r(x) = mean_e (f_e(x) - lo_e) / (hi_e - lo_e)``, the utility on the scale
  of what the user was shown: 0 at the worst item observed so far, 1 at the best (as the
  ensemble mean ranks them; beyond 1 above it). Choices fix utilities only up to a shift and,
  when they are (nearly) deterministic, a scale; the two observed items fix both. (A
  probability such as ``sigmoid(f - a)`` would saturate: answers without noise make the
  likelihood's optimal scale infinite, and the tilt would become a step.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prefalign.learning.adamw import AdamW
from prefalign.learning.nets import build_member
from prefalign.models.sde import VPSDE
from prefalign.runtime import device_generator, to_host
from prefalign.settings import SurrogateConfig

#: The fields of :class:`SurrogateConfig` that fix the network (a warm start must match them).
_ARCH_FIELDS = ("arch", "hidden", "layers", "ensemble")
# Four settings of SurrogateConfig until no config changed them; a checkpoint that recorded them
# loads when they hold these values (prefalign.learning.checkpoint.REMOVED_SETTINGS).
#: AdamW's decoupled weight decay: mild shrinkage for the tiny data sets a surrogate sees.
WEIGHT_DECAY = 1e-4
#: Examples (questions, for the choice head) per minibatch; a smaller data set is one batch.
BATCH_SIZE = 64
#: ``noise_train``: each example is noised to a time ``t ~ U(0, NOISE_T_MAX)`` per epoch (the
#: whole forward process: the sampler asks the surrogate about every ``x_t``).
NOISE_T_MAX = 1.0
#: The networks' activation: smooth, so ``grad_x r`` has no kinks (the sampler follows it).
ACTIVATION = "silu"
#: What the output means, by the form of the answers fitted (see the module's docstring).
HEADS = ("rate", "binary", "choice")
#: Smallest utility span of the choice head (a member that cannot tell its best observed item
#: from its worst: the utilities are not stretched beyond this).
_MIN_SPAN = 1e-3


def head_of(form: str) -> str:
    """The surrogate head that learns from answers in question form ``form``."""
    from prefalign.io.feedback import parse_form

    parsed = parse_form(form)
    return "choice" if parsed.is_choice else parsed.name


@dataclass(frozen=True)
class FitReport:
    """What one call of :func:`fit` did."""

    epochs: int  # passes over the data per member
    # last epoch's mean train loss over members: MSE in standardised reward units (rate),
    # binary cross-entropy (binary), cross-entropy of the choices (choice)
    final_loss: float
    seconds: float  # wall-clock time of the fit
    n_examples: int  # training examples (before bootstrap resampling)
    warm_started: bool  # whether the weights started from ``init``

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


class Surrogate(nn.Module):
    """Ensemble reward model with input normalisation and output de-standardisation built in.

    Args:
        config: architecture (and training) settings; ``config.ensemble`` members are built.
        event_shape: shape of one input, ``(d,)`` or ``(C, H, W)``.
        x_mean, x_std: input normalisation, shape ``event_shape`` (MLP) or ``()`` (CNN).
        y_mean, y_std: reward standardisation, scalars (``rate`` head; 0 and 1 otherwise).
        seed: seeds the members' initial weights (member ``e`` from :func:`member_seeds`).
        head: what the output is (:data:`HEADS`): a rating, a like probability, or a choice
            probability against each member's ``anchor`` utility.
        anchor, span: (E,) each member's utility of the worst observed item and how much
            more the best one has (``choice`` head; 0 and 1 when None).
    """

    def __init__(
        self,
        config: SurrogateConfig,
        event_shape: tuple[int, ...],
        *,
        x_mean: torch.Tensor,
        x_std: torch.Tensor,
        y_mean: float,
        y_std: float,
        seed: int = 0,
        head: str = "rate",
        anchor: torch.Tensor | None = None,
        span: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        event_shape = tuple(int(s) for s in event_shape)
        if config.arch == "cnn" and len(event_shape) != 3:
            raise ValueError(f"arch 'cnn' needs event_shape (C, H, W), got {event_shape}")
        stat_shape = normalisation_shape(config.arch, event_shape)
        for name, stat in (("x_mean", x_mean), ("x_std", x_std)):
            if tuple(stat.shape) != stat_shape:
                raise ValueError(f"{name} must have shape {stat_shape}, got {tuple(stat.shape)}")
        if not (torch.all(x_std > 0) and y_std > 0):
            raise ValueError("x_std and y_std must be positive")
        self.config = config
        self.event_shape = event_shape
        self.head = head
        nets = []
        for init_seed, _ in member_seeds(seed, config.ensemble):
            gen = torch.Generator(device="cpu").manual_seed(init_seed)  # the same on every device
            nets.append(
                build_member(
                    config.arch, event_shape, config.hidden, config.layers, ACTIVATION, gen
                )
            )
        self.nets = nn.ModuleList(nets)
        # Normalisation is metadata (meta.json), not weights: non-persistent buffers.
        self.register_buffer("x_mean", x_mean.detach().float().clone(), persistent=False)
        self.register_buffer("x_std", x_std.detach().float().clone(), persistent=False)
        where = x_mean.device  # the buffers live with the statistics (moved by .to(device))
        self.register_buffer("y_mean", torch.tensor(float(y_mean), device=where), persistent=False)
        self.register_buffer("y_std", torch.tensor(float(y_std), device=where), persistent=False)
        anchor = (
            torch.zeros(config.ensemble, device=where)
            if anchor is None
            else anchor.detach().float()
        )
        span = torch.ones(config.ensemble, device=where) if span is None else span.detach().float()
        for name, values in (("anchor", anchor), ("span", span)):
            if tuple(values.shape) != (config.ensemble,) or not torch.isfinite(values).all():
                raise ValueError(f"{name} must be {config.ensemble} finite values, got {values}")
        if not (span > 0).all():
            raise ValueError(f"span must be positive, got {span}")
        self.register_buffer("anchor", anchor.clone(), persistent=False)
        self.register_buffer("span", span.clone(), persistent=False)

    def _check_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.event_shape or x.dim() != len(self.event_shape) + 1:
            raise ValueError(
                f"surrogate expects inputs of shape (N, {', '.join(map(str, self.event_shape))}),"
                f" got {tuple(x.shape)}"
            )

    def standardised_members(self, x: torch.Tensor) -> torch.Tensor:
        """Members' outputs in standardised reward units, (E, N); used for training."""
        self._check_input(x)
        z = (x - self.x_mean) / self.x_std  # (N, *event_shape)
        return torch.stack([net(z) for net in self.nets])  # (E, N)

    def members(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's reward: (N, *event_shape) -> (E, N): in the oracle's units (``rate``),
        a like probability (``binary``), or the utility from 0 at the worst item observed to 1 at
        the best (``choice``)."""
        f = self.standardised_members(x)  # (E, N)
        if self.head == "binary":
            return torch.sigmoid(f)
        if self.head == "choice":
            return (f - self.anchor[:, None]) / self.span[:, None]
        return self.y_mean + self.y_std * f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble-mean reward, differentiable in ``x``: (N, *event_shape) -> (N,)."""
        return self.members(x).mean(dim=0)  # (N,)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ensemble mean and standard deviation across members, each (N,).

        The std uses Bessel's correction and is zero for a single member.
        """
        r = self.members(x)  # (E, N)
        if r.shape[0] == 1:
            return r[0], torch.zeros_like(r[0])
        return r.mean(dim=0), r.std(dim=0)


def normalisation_shape(arch: str, event_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of ``x_mean``/``x_std``: per feature for the MLP, one scalar for the CNN."""
    return () if arch == "cnn" else tuple(event_shape)


def member_seeds(seed: int, ensemble: int) -> list[tuple[int, int]]:
    """Independent ``(init_seed, train_seed)`` pairs for each member, derived from ``seed``."""
    children = np.random.SeedSequence(seed).spawn(ensemble)
    return [tuple(int(s) for s in c.generate_state(2, dtype=np.uint32)) for c in children]


def training_set_hash(
    x: np.ndarray, y: np.ndarray, form: str = "rate", questions: np.ndarray | None = None
) -> str:
    """sha256 (hex) of the training set: shapes, then x and y as little-endian float32 bytes;
    for answers in another form than ``rate``, then the form and each item's question."""
    x32 = np.ascontiguousarray(x, dtype="<f4")
    y32 = np.ascontiguousarray(y, dtype="<f4")
    h = hashlib.sha256()
    h.update(json.dumps({"x": list(x32.shape), "y": list(y32.shape)}).encode())
    h.update(x32.tobytes())
    h.update(y32.tobytes())
    if form != "rate":
        listed = [] if questions is None else [str(q) for q in questions]
        h.update(json.dumps({"form": form, "questions": listed}).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Fitting


def check_observations(x: np.ndarray, y: np.ndarray) -> tuple[int, ...]:
    """The event shape of observations ``x`` (N, *event_shape) with answers ``y`` (N,); a
    ``ValueError`` naming the problem when the shapes disagree or a value is not finite."""
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (N, *event_shape) with N >= 1, got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (found NaN or inf)")
    return tuple(x.shape[1:])


def fit_ensemble(
    x: np.ndarray,
    y: np.ndarray,
    config: SurrogateConfig,
    *,
    seed: int,
    init: Surrogate | None = None,
    sde: VPSDE | None = None,
    progress: bool = False,
    form: str = "rate",
    questions: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> tuple[Surrogate, FitReport]:
    """:func:`prefalign.learning.surrogate.fit` for the networks (``arch`` ``mlp`` or ``cnn``):
    an ensemble of members trained with AdamW, returned in eval mode with its report."""
    start = time.perf_counter()
    # 1. validate the data
    x = np.asarray(x)
    y = np.asarray(y)
    event_shape = check_observations(x, y)
    if config.arch == "cnn" and len(event_shape) != 3:
        raise ValueError(f"arch 'cnn' needs images (N, C, H, W), got x of shape {x.shape}")
    if config.noise_train and sde is None:
        raise ValueError("config.noise_train=True needs the domain's sde (pass sde=...)")
    head = head_of(form)
    device = torch.device("cpu" if device is None else device)
    groups = _question_groups(questions, len(y), form) if head == "choice" else None
    groups = None if groups is None else groups.to(device)

    # 2. normalisation statistics from the new data (float64, stored as float32)
    x_mean, x_std, y_mean, y_std = _statistics(x, y, config.arch)
    if head != "rate":  # the networks' output is a logit or a utility, not standardised
        y_mean, y_std = 0.0, 1.0
    surrogate = Surrogate(
        config,
        event_shape,
        x_mean=x_mean,
        x_std=x_std,
        y_mean=y_mean,
        y_std=y_std,
        seed=seed,
        head=head,
    )

    # 3. warm start: copy the previous weights
    warm = init is not None and config.warm_start
    if warm:
        assert init is not None
        _check_compatible(init, config, event_shape)
        if init.head != head:
            raise ValueError(
                f"cannot warm-start a {head!r} surrogate from a {init.head!r} one (another form)"
            )
        surrogate.nets.load_state_dict(init.nets.state_dict())
    surrogate.to(device)

    # 4. train each member on its own bootstrap resample and random stream
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)  # (N, *event_shape)
    yt = (torch.as_tensor(y, dtype=torch.float64, device=device) - y_mean) / y_std
    yt = yt.float()  # (N,) standardised
    n = xt.shape[0]
    bar = None
    if progress:
        from prefalign.io.progress import tqdm

        bar = tqdm(total=config.ensemble * config.epochs, desc="fit surrogate", unit="epoch")
    losses = []
    surrogate.train()
    seeds = member_seeds(seed, config.ensemble)
    for net, (_, train_seed) in zip(surrogate.nets, seeds, strict=True):
        gen = device_generator(train_seed, device)
        draws = gen.device  # the generator's device (the CPU's for meta)
        if groups is not None:  # whole questions: (Q, K) rows of x
            q = groups.shape[0]
            pick = (
                torch.randint(q, (q,), generator=gen, device=draws).to(device)
                if config.ensemble > 1
                else torch.arange(q, device=device)
            )
            rows = groups[pick]
            losses.append(_train_member(surrogate, net, xt, yt, config, gen, sde, bar, head, rows))
            continue
        idx = (
            torch.randint(n, (n,), generator=gen, device=draws).to(device)
            if config.ensemble > 1
            else torch.arange(n, device=device)
        )
        losses.append(_train_member(surrogate, net, xt[idx], yt[idx], config, gen, sde, bar, head))
    if bar is not None:
        bar.close()
    surrogate.eval()
    if head == "choice":  # each member's utilities of the worst and best items observed
        with torch.no_grad():
            utilities = surrogate.standardised_members(xt)  # (E, N)
            mean = utilities.mean(dim=0)  # the worst and best items found on the device
            worst, best = torch.argmin(mean).reshape(1), torch.argmax(mean).reshape(1)
            low, high = (
                utilities.index_select(1, worst)[:, 0],
                utilities.index_select(1, best)[:, 0],
            )
            surrogate.anchor.copy_(low)
            surrogate.span.copy_(torch.clamp(high - low, min=_MIN_SPAN))
    report = FitReport(
        epochs=config.epochs,
        final_loss=float(np.mean(losses)),
        seconds=time.perf_counter() - start,
        n_examples=n,
        warm_started=warm,
    )
    return surrogate, report


def _question_groups(questions: np.ndarray | None, n: int, form: str) -> torch.Tensor:
    """(Q, K) row indices of each question's items (contiguous rows, K per question)."""
    from prefalign.io.feedback import group_items, parse_form

    if questions is None:
        raise ValueError(f"answers in form {form!r} need the question of each item (questions=)")
    questions = np.asarray(questions).astype(str)
    if questions.shape != (n,):
        raise ValueError(f"questions must have shape ({n},), got {questions.shape}")
    rows = [str(i) for i in range(n)]
    grouped = group_items(rows, questions.tolist(), parse_form(form), "surrogate training data")
    index = [[int(r) for r in items] for items in grouped.values()]
    return torch.tensor(index, dtype=torch.long, device="cpu")  # moved to the device by fit


def _statistics(
    x: np.ndarray, y: np.ndarray, arch: str
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Input mean/std (per feature for MLP, scalar for CNN) and reward mean/std.

    A (near-)constant feature or reward gets std 1, so normalisation never divides by ~0.
    """
    x64 = x.astype(np.float64)
    axis = None if arch == "cnn" else 0
    x_mean = x64.mean(axis=axis)
    x_std = x64.std(axis=axis)
    x_std = np.where(x_std > 1e-6, x_std, 1.0)
    y_mean = float(y.mean())
    y_std = float(y.std())
    y_std = y_std if y_std > 1e-8 else 1.0
    return (
        torch.as_tensor(x_mean, dtype=torch.float32, device="cpu"),  # moved with the surrogate
        torch.as_tensor(x_std, dtype=torch.float32, device="cpu"),
        y_mean,
        y_std,
    )


def _check_compatible(
    init: Surrogate, config: SurrogateConfig, event_shape: tuple[int, ...]
) -> None:
    diffs = [
        f"{f}: {getattr(init.config, f)!r} vs {getattr(config, f)!r}"
        for f in _ARCH_FIELDS
        if getattr(init.config, f) != getattr(config, f)
    ]
    if init.event_shape != event_shape:
        diffs.append(f"event_shape: {init.event_shape} vs {event_shape}")
    if diffs:
        raise ValueError(
            "cannot warm-start from a surrogate with a different architecture (init vs config): "
            + "; ".join(diffs)
        )


def _train_member(
    surrogate: Surrogate,
    net: nn.Module,
    x: torch.Tensor,  # (N, *event_shape)
    y: torch.Tensor,  # (N,) standardised
    config: SurrogateConfig,
    gen: torch.Generator,
    sde: VPSDE | None,
    bar: Any,
    head: str = "rate",
    groups: torch.Tensor | None = None,  # (Q, K) rows of x per question: the choice head
) -> float:
    """AdamW on one member's loss (by ``head``); returns the last epoch's mean loss. The
    examples are the rows of ``x`` or, for the choice head, the questions of ``groups``.
    The batches' losses stay on the device: the last epoch's (every epoch's with a progress
    bar) are read once, after the epoch."""
    opt = AdamW(net.parameters(), lr=config.lr, weight_decay=WEIGHT_DECAY)
    n = x.shape[0] if groups is None else groups.shape[0]
    epoch_loss = float("nan")
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=gen, device=gen.device).to(x.device)
        batch_losses, sizes = [], []
        for lo in range(0, n, BATCH_SIZE):
            batch = perm[lo : lo + BATCH_SIZE]
            if groups is not None:
                rows = groups[batch]  # (B, K)
                xb, yb = x[rows.reshape(-1)], y[rows]  # (B*K, *event_shape), (B, K)
            else:
                xb, yb = x[batch], y[batch]  # (B, *event_shape), (B,)
            if config.noise_train:
                assert sde is not None
                xb = _noised(xb, sde, NOISE_T_MAX, gen)
            z = (xb - surrogate.x_mean) / surrogate.x_std
            loss = _loss(net(z), yb, head)
            opt.zero_grad()
            loss.backward()
            opt.step()
            batch_losses.append(loss.detach())
            sizes.append(len(batch))
        if bar is None and epoch < config.epochs - 1:
            continue
        host = to_host(torch.stack(batch_losses))
        values = [float("nan")] * len(sizes) if host is None else host.tolist()  # meta: none
        total = 0.0
        for value, size in zip(values, sizes, strict=True):
            total += value * size
        epoch_loss = total / n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss:.4f}", refresh=False)
    return epoch_loss


def _loss(out: torch.Tensor, target: torch.Tensor, head: str) -> torch.Tensor:
    """Mean loss of a batch: MSE (rate), BCE on logits (binary), or the cross-entropy of the
    softmax over each question's items against its answer (choice; ``target`` (B, K))."""
    if head == "binary":
        return nn.functional.binary_cross_entropy_with_logits(out, target)
    if head == "choice":
        logp = torch.log_softmax(out.reshape(target.shape), dim=1)
        return -(target * logp).sum(dim=1).mean()
    return torch.mean((out - target) ** 2)


def _noised(x: torch.Tensor, sde: VPSDE, t_max: float, gen: torch.Generator) -> torch.Tensor:
    """``x_t = a_t x + s_t eps`` with ``t ~ U(0, t_max)`` drawn per example (on the generator's
    device, computed on ``x``'s)."""
    t = torch.rand(x.shape[0], generator=gen, dtype=torch.float64, device=gen.device) * t_max
    a, s = (v.to(device=x.device, dtype=x.dtype) for v in sde.marginal_scales(t))  # (B,) each
    eps = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=gen.device).to(x.device)
    return _per_example(a, x) * x + _per_example(s, x) * eps


def _per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector (B,) to broadcast against ``like`` (B, *event_shape)."""
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))
