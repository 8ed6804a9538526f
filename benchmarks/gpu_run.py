"""Every GPU measurement of issue 13 in one command, on a fresh GPU machine (Python 3.12 and torch,
no Ray, no Optuna, no network), inside 9 minutes; a small results JSON at the end.

    python3 benchmarks/gpu_run.py --bundle bundle/gpu-bundle.tar.xz --out "$OUT"

1. unpacks the bundle of ``benchmarks/gpu_bundle.py`` (Ray, Optuna and their missing
   dependencies under ``site/``, Fashion-MNIST under ``data/``) into ``--into``, put first on
   ``PYTHONPATH`` of every step, with the repository root (tricksearch itself);
2. runs each step in its own process with its own timeout (cut further so that the whole run
   ends by ``--total`` seconds), recording its exit status, seconds and output tail:
   ``env`` (versions, the GPU), ``engine-resnet`` / ``engine-cnn`` (``engine_throughput.py``:
   engine images/s vs a torchvision Dataset + DataLoader loop), ``host-syncs``
   (``benchmarks/host_syncs.py``, when it exists), ``search`` (a 32-trial Fashion-MNIST search
   with resnet-cifar and ``--gpus-per-trial auto``, ``nvidia-smi`` sampling utilisation and
   memory every 500 ms meanwhile);
3. writes ``results.json`` in ``--out``: the steps, the engines' numbers, the search's wall time,
   trials per GPU, test accuracy of the recipe, and the GPU utilisation while it ran.

``--only env,search`` runs some steps; the orchestration is tested on a CPU with a fake bundle
(``tests/test_gpu_run.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMI = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
SEARCH_ARGS = (
    "--trials 32 --epochs 8 --batch-size 256 --lr 0.1 --space default --gpus-per-trial auto "
    "--cpus-per-trial 1 --top-k 2 --seeds 2 --tuned-baseline 0 --no-minimal --time-budget 150"
)


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: float
    sample_gpu: bool = False
    result: dict = field(default_factory=dict)


def unpack(bundle: Path, into: Path) -> dict:
    """The bundle extracted into ``into`` (``site/``, ``data/``, ``manifest.json``)."""
    t0 = time.monotonic()
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r:*") as tar:
        tar.extractall(into, filter="data")
    manifest = into / "manifest.json"
    info = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return {"seconds": round(time.monotonic() - t0, 1), "wheels": info.get("wheels", [])}


def step_env(into: Path) -> dict[str, str]:
    """The environment of every step: the bundle's ``site/`` and the repository first."""
    env = dict(os.environ)
    paths = [str(into / "site"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def plan(args: argparse.Namespace, into: Path, out: Path) -> list[Step]:
    py, data = sys.executable, str(into / "data" / "fashion-mnist")
    bench = ROOT / "benchmarks"
    env_code = (
        "import json, torch, ray, optuna, tricksearch; print(json.dumps({'torch': "
        "torch.__version__, 'ray': ray.__version__, 'optuna': optuna.__version__, 'cuda': "
        "torch.cuda.is_available(), 'gpu': torch.cuda.get_device_name(0) if "
        "torch.cuda.is_available() else None, 'ray_from': ray.__file__}))"
    )
    engine = [py, str(bench / "engine_throughput.py"), "--device", args.device]
    engine += ["--data-root", data, "--epochs", "2", "--limit", "30000", "--workers", "4"]
    steps = [
        Step("env", [py, "-c", env_code], 30),
        Step(
            "engine-resnet",
            [*engine, "--model", "resnet-cifar", "--json", str(out / "engine-resnet.json")],
            90,
        ),
        Step(
            "engine-cnn",
            [*engine, "--model", "cnn-small", "--json", str(out / "engine-cnn.json")],
            70,
        ),
    ]
    if (bench / "host_syncs.py").is_file():
        syncs = [py, str(bench / "host_syncs.py"), "--device", args.device]
        steps.append(Step("host-syncs", syncs, 40))
    search = [py, "-m", "tricksearch.cli", "search", "--dataset", "fashion-mnist"]
    search += ["--data-root", data, "--model", "resnet-cifar", "--out", str(out / "search")]
    steps.append(Step("search", [*search, *shlex.split(args.search_args)], 270, sample_gpu=True))
    if args.only:
        wanted = set(args.only.split(","))
        steps = [s for s in steps if s.name in wanted]
    return steps


def run_step(step: Step, env: dict[str, str], deadline: float, log: Path) -> dict:
    """Run one step, cut at its timeout or at ``deadline`` (monotonic), whichever is first."""
    timeout = max(1.0, min(step.timeout, deadline - time.monotonic()))
    sampler = None
    samples = log.with_suffix(".smi.csv")
    if step.sample_gpu and _has_smi():
        sampler = subprocess.Popen([*SMI, "-lms", "500"], stdout=samples.open("w"))
    t0 = time.monotonic()
    with log.open("w") as fh:
        try:
            proc = subprocess.run(
                step.argv, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
            )
            rc, timed_out = proc.returncode, False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
    result = {
        "rc": rc,
        "timed_out": timed_out,
        "timeout": round(timeout, 1),
        "seconds": round(time.monotonic() - t0, 1),
        "tail": log.read_text(errors="replace")[-1500:],
    }
    if sampler is not None:
        sampler.terminate()
        sampler.wait(timeout=10)
        result["gpu"] = gpu_stats(samples.read_text())
    return result


def _has_smi() -> bool:
    import shutil

    return shutil.which("nvidia-smi") is not None


def gpu_stats(text: str, busy: float = 80.0) -> dict:
    """``nvidia-smi`` samples (``util, memory`` per line) -> mean, median, share >= ``busy``."""
    util, mem = [], []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            util.append(float(parts[0]))
            mem.append(float(parts[1]))
        except (ValueError, IndexError):
            continue
    if not util:
        return {"samples": 0}
    ranked = sorted(util)
    return {
        "samples": len(util),
        "util_mean": round(sum(util) / len(util), 1),
        "util_median": ranked[len(ranked) // 2],
        f"share_at_least_{busy:g}": round(sum(u >= busy for u in util) / len(util), 3),
        "memory_max_mib": max(mem),
    }


def search_numbers(run: Path) -> dict:
    """What the search's folder says: recipe test accuracy, trials, packing, seconds."""
    out: dict = {}
    results = run / "results.json"
    if results.is_file():
        summary = json.loads(results.read_text()).get("summary", {})
        search = summary.get("search", {})
        out |= {k: search.get(k) for k in ("trials", "seconds", "tune_seconds", "slots")}
        out["verdict"] = summary.get("verdict")
        out["test"] = summary.get("test")
    packing = run / "packing.json"
    if packing.is_file():
        out["packing"] = json.loads(packing.read_text())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bundle", type=Path, default=ROOT / "bundle" / "gpu-bundle.tar.xz")
    p.add_argument("--into", type=Path, default=Path("/tmp/tricksearch-bundle"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-run")))
    p.add_argument("--total", type=float, default=520.0, help="seconds for all steps")
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", default=None, help="comma-separated step names")
    p.add_argument("--search-args", default=SEARCH_ARGS)
    args = p.parse_args(argv)
    deadline = time.monotonic() + args.total
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": {}}
    path = args.out / "results.json"
    results["unpack"] = unpack(args.bundle, args.into)
    env = step_env(args.into)
    for step in plan(args, args.into, args.out):
        print(f"[{time.strftime('%H:%M:%S')}] {step.name} …", flush=True)
        results["steps"][step.name] = run_step(step, env, deadline, args.out / f"{step.name}.log")
        print(json.dumps({k: v for k, v in results["steps"][step.name].items() if k != "tail"}))
        path.write_text(json.dumps(results, indent=2) + "\n")  # kept if the run is cut
    for name in ("engine-resnet", "engine-cnn"):
        if (args.out / f"{name}.json").is_file():
            results[name] = json.loads((args.out / f"{name}.json").read_text())
    if (args.out / "search").is_dir():
        results["search"] = search_numbers(args.out / "search")
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path}")
    return 0 if all(s["rc"] == 0 for s in results["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
