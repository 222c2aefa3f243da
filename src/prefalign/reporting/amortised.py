"""The fine-tuning table of an experiment with ``distil``: the FKC sampler beside the models
fine-tuned from it (full, split, LoRA), the online fine-tuning baselines (PAPA- and D3PO-style)
and the other methods of the experiment, at equal questions: fresh-sample reward (the simulated
user and the independent evaluator), validity, diversity, sampling cost per sample and
fine-tuning cost, mean ± 95 % CI over seeds, and each model's reward paired by seed against the
sampler it was distilled from."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from prefalign.reporting.comparison import paired_differences
from prefalign.reporting.metrics import ci95
from prefalign.reporting.tables import write_paired_table, write_tables

StrPath = str | os.PathLike[str]

METRICS: tuple[str, ...] = (
    "mean_reward",
    "eval_mean_reward",
    "validity_rate",
    "network_evals_per_sample",
    "ms_per_sample",
    "finetune_seconds",
    "thousands_of_parameters_trained",
)


def _row(record: dict, label: str, finetune_seconds: float, trained: float) -> dict:
    row = {
        "domain": record["domain"],
        "method": label,
        "seed": int(record["seed"]),
        "questions": int(record["n_queries"]),
        "mean_reward": record.get("mean_reward", np.nan),
        "eval_mean_reward": record.get("eval_mean_reward", np.nan),
        "validity_rate": record.get("validity_rate", np.nan),
        "network_evals_per_sample": record.get("network_evals_per_sample", np.nan),
        "ms_per_sample": 1000 * record.get("seconds_per_sample", np.nan),
        "finetune_seconds": finetune_seconds,
        "thousands_of_parameters_trained": trained / 1000,
    }
    for key, value in record.get("diversity", {}).items():
        row[f"diversity_{key}"] = value
    return row


def amortised_rows(
    evaluations: Sequence[StrPath], distilled: Sequence[StrPath], modes: Sequence[str]
) -> pd.DataFrame:
    """One row per (model, seed): each campaign's final evaluation (its fine-tuning cost read
    from the learner's last model, ``<evaluation>/surrogate/finetune.json``, when it has one),
    and each ``finetune`` output folder's models (their cost includes drawing the teacher's
    particles)."""
    rows = []
    for path in evaluations:
        record = json.loads(Path(path).read_text())
        learnt = Path(path).with_suffix("") / "surrogate" / "finetune.json"
        seconds, trained = np.nan, np.nan
        if learnt.is_file():
            learner = json.loads(learnt.read_text())
            seconds = float(learner["cumulative_seconds"])
            trained = float(learner["trained_parameters"])
        label = record["method"]
        if record.get("network_evals_per_sample", 0) and not learnt.is_file():
            label = f"{label} (FKC sampler)" if "→" not in label else label
        rows.append(_row(record, label, seconds, trained))
    for folder in distilled:
        folder = Path(folder)
        teacher = json.loads((folder / "teacher.json").read_text())
        drawing = teacher["seconds_per_sample"] * teacher["n_particles"]
        for mode in modes:
            record = json.loads((folder / f"{mode}.json").read_text())
            rows.append(
                _row(
                    record,
                    record["method"],
                    record["finetune_seconds"] + drawing,
                    float(record["trained_parameters"]),
                )
            )
    return pd.DataFrame(rows)


def _summary(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    metrics = list(METRICS) + sorted(c for c in rows.columns if c.startswith("diversity_"))
    out = []
    for (domain, method), part in rows.groupby(["domain", "method"], sort=False):
        entry = {"domain": domain, "method": method, "questions": int(part["questions"].iloc[0])}
        for metric in metrics:
            values = part[metric].to_numpy(np.float64)
            mean, half = ci95(values)
            if np.isfinite(values).all() and np.ptp(values) == 0:
                half = np.nan  # the same on every seed (a count): no interval to show
            entry[metric], entry[f"{metric}_ci95"] = mean, half
        entry["n_seeds"] = len(part)
        out.append(entry)
    table = pd.DataFrame(out)
    rank = {m: i for i, m in enumerate(order)}
    table["_rank"] = table["method"].map(lambda m: rank.get(m, len(rank)))
    table = table.sort_values(["domain", "_rank"], kind="stable")
    return table.drop(columns="_rank").reset_index(drop=True)


def write_amortised(
    evaluations: Sequence[StrPath],
    distilled: Sequence[StrPath],
    modes: Sequence[str],
    out_dir: StrPath,
    *,
    teacher: str,
    title: str,
    page_dir: StrPath,
) -> Path:
    """Write ``tables/amortised.{md,csv,tex,json}``, ``tables/amortised_paired.{md,csv}`` and
    the section ``amortised.md`` of experiment folder ``out_dir``; ``teacher``: the method the
    models were distilled from (the paired reference)."""
    out_dir = Path(out_dir)
    rows = amortised_rows(evaluations, distilled, modes)
    reference = f"{teacher} (FKC sampler)"
    order = [reference] + [f"{teacher} → {m}" for m in modes]
    table = _summary(rows, order)
    tables = out_dir / "tables"
    write_tables(table, tables / "amortised")
    (tables / "amortised.json").write_text(rows.to_json(orient="records", indent=2) + "\n")
    paired = paired_differences(
        rows, reference, metrics=("mean_reward", "eval_mean_reward", "validity_rate")
    )
    write_paired_table(paired, tables / "amortised_paired")
    page_dir = Path(page_dir)
    lines = [
        f"### {title}: the alignment taken home (fine-tuned models)",
        "",
        f"The FKC sampler of `{teacher}` (its last surrogate) distilled into the base model by "
        "weighted denoising score matching on its particles, in each mode "
        f"({', '.join(modes)}), beside the online fine-tuning baselines and the other methods, "
        "at equal questions. Fresh samples of each model; network evaluations and milliseconds "
        "per aligned sample (the FKC sampler counts the surrogate's gradient too); fine-tuning "
        "seconds (distillation: drawing the teacher's particles and training; the baselines: "
        "every round's fine-tuning) and parameters trained. Mean ± 95 % CI over seeds.",
        "",
        (tables / "amortised.md").read_text().rstrip(),
        "",
        f"Paired by seed against `{reference}` (mean difference [95 % t interval]):",
        "",
        (tables / "amortised_paired.md").read_text().rstrip(),
        "",
    ]
    first = sorted(Path(p) for p in distilled)[:1]
    figures = out_dir / "figures"
    for folder in first:  # copied beside the committed figures, so the page's links resolve
        lines += [f"Samples of each fine-tuned model ({folder.name}):", ""]
        for mode in modes:
            picture = folder / f"{mode}.png"
            if picture.is_file():
                figures.mkdir(parents=True, exist_ok=True)
                copy = figures / f"finetuned_{mode}.png"
                shutil.copyfile(picture, copy)
                link = Path(os.path.relpath(copy, page_dir)).as_posix()
                lines.append(f"![{teacher} → {mode}]({link})")
        lines.append("")
    section = out_dir / "amortised.md"
    section.write_text("\n".join(lines) + "\n")
    return section
