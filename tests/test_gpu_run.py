"""``benchmarks/gpu_run.py`` on a CPU with a fake bundle: the orchestration (unpacking, the
bundle first on every step's path, per-step timeouts, the results file), not the GPU numbers."""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_run():
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "benchmarks" / "gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_run"] = module
    spec.loader.exec_module(module)
    return module


def _fake_bundle(tmp_path: Path) -> Path:
    stage = tmp_path / "stage"
    for name in ("ray", "optuna"):
        (stage / "site" / name).mkdir(parents=True)
        (stage / "site" / name / "__init__.py").write_text('__version__ = "fake-bundle"\n')
    (stage / "data" / "fashion-mnist").mkdir(parents=True)
    (stage / "manifest.json").write_text(json.dumps({"wheels": ["ray-fake.whl"]}))
    bundle = tmp_path / "bundle.tar.xz"
    with tarfile.open(bundle, "w:xz") as tar:
        for child in stage.iterdir():
            tar.add(child, arcname=child.name)
    return bundle


def test_the_env_step_imports_ray_and_optuna_from_the_bundle(gpu_run, tmp_path: Path) -> None:
    bundle, out = _fake_bundle(tmp_path), tmp_path / "out"
    where = ["--bundle", str(bundle), "--into", str(tmp_path / "into"), "--out", str(out)]
    rc = gpu_run.main([*where, "--only", "env", "--device", "cpu", "--total", "120"])
    results = json.loads((out / "results.json").read_text())
    assert rc == 0 and results["unpack"]["wheels"] == ["ray-fake.whl"]
    env = results["steps"]["env"]
    assert env["rc"] == 0 and not env["timed_out"]
    seen = json.loads(env["tail"].strip().splitlines()[-1])
    assert seen["ray"] == seen["optuna"] == "fake-bundle"  # the bundle's, not this venv's
    assert seen["ray_from"].startswith(str(tmp_path / "into" / "site"))


def test_a_step_is_cut_at_its_timeout_or_the_deadline(gpu_run, tmp_path: Path) -> None:
    slow = gpu_run.Step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], 1.0)
    t0 = time.monotonic()
    got = gpu_run.run_step(slow, {}, time.monotonic() + 60, tmp_path / "slow.log")
    assert got["timed_out"] and got["rc"] is None and time.monotonic() - t0 < 10
    late = gpu_run.Step("late", [sys.executable, "-c", "pass"], 100.0)
    got = gpu_run.run_step(late, {}, time.monotonic() + 5, tmp_path / "late.log")
    assert got["timeout"] <= 5 and got["rc"] == 0


def test_the_plan_and_the_gpu_samples(gpu_run, tmp_path: Path) -> None:
    args = gpu_run.argparse.Namespace(device="cuda", only=None, search_args=gpu_run.SEARCH_ARGS)
    steps = gpu_run.plan(args, tmp_path, tmp_path)
    names = [s.name for s in steps]
    assert names[:3] == ["env", "engine-resnet", "engine-cnn"] and names[-1] == "search"
    search = steps[-1]
    assert search.sample_gpu and "auto" in search.argv and "resnet-cifar" in search.argv
    assert sum(s.timeout for s in steps) <= 9 * 60 - 30  # the device run's 9 minutes
    stats = gpu_run.gpu_stats("95, 1000\n85, 2000\n10, 500\nbad line\n")
    assert stats["samples"] == 3 and stats["share_at_least_80"] == pytest.approx(0.667)
    assert stats["memory_max_mib"] == 2000
