"""Shared fixtures: one thread for torch so timings and results are stable on 2 cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
