"""A non-editable install works: the built wheel, installed in a fresh venv outside the repository,
runs ``flchain simulate`` from the package alone (the contract artifact is package data).

The venv sees the dependencies already installed beside this test's interpreter through a ``.pth`` line
(no network), but never the repository's source: ``fl_chain`` is imported from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: What the wheel is built from; copied so that the build writes nothing into the repository.
SOURCES = ("pyproject.toml", "README.md", "fl_chain")
#: Variables that could make the venv's python see the repository or another artifact.
SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "FLCHAIN_ARTIFACTS", "VIRTUAL_ENV")

pytestmark = pytest.mark.integration


def copy_sources(destination: Path) -> Path:
    """Copy what the wheel is built from into ``destination``, without caches or earlier builds."""
    destination.mkdir(parents=True)
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def build_wheel(source: Path, dist: Path) -> Path:
    """``pip wheel`` without build isolation (setuptools comes with the test extras), so no network."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(dist),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (wheel,) = dist.glob("fl_chain-*.whl")
    return wheel


def venv_with_wheel(wheel: Path, root: Path) -> Path:
    """A fresh venv at ``root`` with ``wheel`` installed and the already-installed dependencies visible."""
    venv.create(root, with_pip=False)
    python = root / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Only after the install: a pip that saw the shared site-packages might uninstall its editable fl-chain.
    # A path line in a .pth adds the directory alone; that directory's own .pth files (the editable
    # install's finder among them) are not run, so the repository's source stays invisible.
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site_packages) / "shared_dependencies.pth").write_text("\n".join(sorted(shared)) + "\n")
    return python


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENV}


def test_wheel_installed_outside_the_repository_runs_a_simulation(tmp_path: Path) -> None:
    """4 nodes, 2 rounds from the installed wheel's ``flchain``: both rounds finalize."""
    # Prepare
    wheel = build_wheel(copy_sources(tmp_path / "src"), tmp_path / "dist")
    python = venv_with_wheel(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import fl_chain.chain.artifacts as a; print(a.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=clean_env(),
    ).stdout.strip()
    out = tmp_path / "run"

    # Execute
    result = subprocess.run(
        [str(python.parent / "flchain"), "simulate", "--nodes", "4", "--rounds", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
        env=clean_env(),
        check=False,
    )

    # Assert
    assert Path(where).is_relative_to(tmp_path / "venv"), f"fl_chain imported from {where}, not the wheel"
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["rounds"]] == ["finalized", "finalized"]
    assert all(0.0 < r["test_accuracy"] <= 1.0 and r["global_model_cid"].startswith("bafy") for r in summary["rounds"])
    assert summary["final_accuracy"] == summary["rounds"][-1]["test_accuracy"]
