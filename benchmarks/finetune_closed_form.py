"""Fine-tuning against a closed form (issue "Take the alignment home").

mixture2d with an MLP base model, tilted by a quadratic reward whose tilted target is a Gaussian
mixture in closed form (prefalign.finetune.closed_form): the FKC sampler (the teacher) and each
fine-tuned model (full, split at several t_split, LoRA), sampled with plain ancestral steps, in
multiples of the exact-vs-exact energy-distance floor, over seeds.

    python benchmarks/finetune_closed_form.py --seeds 0 1 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from prefalign.finetune.closed_form import ClosedFormCheck, run_check


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs = [run_check(replace(ClosedFormCheck(), seed=seed)) for seed in args.seeds]
    models = [row["model"] for row in runs[0]["rows"]]
    print(
        f"seeds {args.seeds}; floor (exact vs exact, {ClosedFormCheck().eval_samples} samples): "
        + ", ".join(f"{r['floor']:.4f}" for r in runs)
    )
    print(
        "| model | energy distance | multiple of floor: mean [min, max] | network evals / sample "
        "| s / 1k samples | fine-tuning s | parameters trained |"
    )
    print("|---|---|---|---|---|---|---|")
    table = []
    for i, model in enumerate(models):
        rows = [r["rows"][i] for r in runs]
        multiple = np.array([row["floor_multiple"] for row in rows])
        distance = np.mean([row["energy_distance"] for row in rows])
        per_sample = [row["seconds_per_sample"] for row in rows if row["seconds_per_sample"]]
        train = [row["train_seconds"] for row in rows if row["train_seconds"]]
        trained = rows[0]["trained_parameters"]
        table.append(
            {
                "model": model,
                "energy_distance": distance,
                "floor_multiple": multiple.tolist(),
                "rows": rows,
            }
        )
        print(
            f"| {model} | {distance:.4f} | {multiple.mean():.1f} [{multiple.min():.1f}, "
            f"{multiple.max():.1f}] | {rows[0]['evals_per_sample']} | "
            + (f"{1000 * np.mean(per_sample):.3f}" if per_sample else "–")
            + " | "
            + (f"{np.mean(train):.1f}" if train else "–")
            + " | "
            + (f"{trained:,}" if trained else "–")
            + " |"
        )
    print(
        f"({time.perf_counter() - started:.0f} s; the base row is against the base mixture and "
        "its own floor; evals of FKC count the score and the reward gradient)"
    )
    out = {"seeds": args.seeds, "table": table}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
