"""The learned reward: surrogate networks, their fit on the observations, and checkpoints.

- :mod:`.nets`: the MLP and CNN bodies, with a time input when trained on noised particles;
- :mod:`.surrogate`: :class:`~.surrogate.Surrogate` (an ensemble with input/output
  normalisation) and :func:`~.surrogate.fit`;
- :mod:`.checkpoint`: ``save_surrogate`` / ``load_surrogate`` (safetensors + meta.json,
  checked on load);
- :mod:`.adamw`: the optimiser, in plain torch (see its docstring for why).
"""
