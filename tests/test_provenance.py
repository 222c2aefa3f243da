"""Provenance: the CPU named by vendor, family, model, stepping and kernel flags; torch's CPU
capability and BLAS; the results page's machine table and base-model table."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from prefalign.provenance import (
    content_hash,
    cpu_identity,
    git_commit,
    machine_record,
    thread_settings,
    torch_kernels,
)
from prefalign.reporting.results_page import write_results_page

REPO = Path(__file__).resolve().parents[1]

#: The first processor of /proc/cpuinfo on the two CPU types issue 27 met, as the kernel writes it.
ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni

processor\t: 1
vendor_id\t: SomethingElse
"""
ZEN4 = ZEN3.replace("model\t\t: 1", "model\t\t: 17").replace(
    "avx2 bmi2", "avx2 avx512f avx512_vnni avx512_bf16 bmi2"
)
SAPPHIRE_RAPIDS = """vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
"""


def test_two_cpus_with_the_same_name_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "zen3").write_text(ZEN3)
    (tmp_path / "zen4").write_text(ZEN4)
    zen3, zen4 = cpu_identity(tmp_path / "zen3"), cpu_identity(tmp_path / "zen4")
    assert zen3.name == zen4.name == "AMD EPYC"
    assert (zen3.vendor, zen3.family, zen3.model, zen3.stepping) == ("AuthenticAMD", "25", "1", "1")
    assert zen4.model == "17"
    assert zen3.flags == ("avx2", "fma")
    assert zen3.instruction_sets() == "AVX2, no AVX-512, no AMX"
    assert zen4.instruction_sets() == "AVX2, AVX-512, no AMX"
    assert "family 25 model 1 stepping 1" in zen3.summary()
    assert "family 25 model 17 stepping 1" in zen4.summary()
    assert zen3.summary() != zen4.summary()


def test_amx_and_a_missing_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "spr").write_text(SAPPHIRE_RAPIDS)
    spr = cpu_identity(tmp_path / "spr")
    assert spr.flags == ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                         "amx_bf16", "amx_int8")  # fmt: skip
    assert spr.instruction_sets() == "AVX2, AVX-512, AMX"
    nothing = cpu_identity(tmp_path / "absent")
    assert nothing.family == "unknown" and nothing.flags == ()


def test_torch_kernels_and_the_machine_record() -> None:
    kernels = torch_kernels()
    assert kernels["torch CPU capability"] == torch.backends.cpu.get_cpu_capability()
    assert kernels["torch BLAS"] != "unknown"
    record = machine_record(torch_threads=1)
    this = cpu_identity()
    assert record["CPU vendor, family, model, stepping"] == (
        f"{this.vendor}, family {this.family}, model {this.model}, stepping {this.stepping}"
    )
    for key in ("torch oneDNN", "BLAS (numpy, scipy)", "OMP_NUM_THREADS", "torch", "numpy"):
        assert key in record, key
    assert record["torch threads per job"] == "1"


def test_kernel_overrides_are_recorded(monkeypatch) -> None:
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert "OPENBLAS_CORETYPE" not in thread_settings()
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert thread_settings()["OPENBLAS_CORETYPE"] == "Haswell"


def test_git_commit(tmp_path: Path) -> None:
    commit = git_commit(REPO)
    assert commit == "unknown" or len(commit.removesuffix("+dirty")) == 40
    assert git_commit(tmp_path) == "unknown"


def test_the_results_page_names_the_cpu_and_the_base_model(tmp_path: Path) -> None:
    section = tmp_path / "section.md"
    section.write_text("## E1\n")
    model = tmp_path / "models" / "digits"
    shutil.copytree(REPO / "models" / "digits", model)
    page = write_results_page(
        tmp_path / "README.md",
        [section],
        config_name="test",
        torch_threads=1,
        base_models={str(model): ["digits", "digits-papa"]},
        shipped_file=REPO / "models" / "shipped.json",
    )
    text = page.read_text()
    this = cpu_identity()
    assert f"family {this.family} model {this.model} stepping {this.stepping}" in text
    assert f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}" in text
    assert f"`{content_hash(model)}`" in text and "digits, digits-papa" in text
    assert "shipped with the project" in text
    assert "| commit |" in text and "## E1" in text
