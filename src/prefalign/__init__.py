"""prefalign: active preference alignment of diffusion models with Feynman-Kac correctors."""

__version__ = "0.1.0"
