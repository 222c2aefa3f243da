"""Base diffusion models and the noise process they were trained with.

- :mod:`.sde`: the VP SDE of fkc-math.md (``beta(t)``, ``alpha(t)``, ``sigma(t)``), shared by
  every domain's score model and by the sampler;
- :mod:`.ddpm`: small diffusers DDPMs (training, loading, the score of a ``UNet2DModel``).

Nothing is imported here: :mod:`.sde` is needed without diffusers (and its start-up cost).
"""
