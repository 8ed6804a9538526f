"""Prepare the bundle that ``benchmarks/gpu_run.py`` unpacks on a bare GPU machine.

Run on a CPU machine that reaches the package index. The GPU machine has Python 3.12 and torch
(and numpy, pandas, pyarrow, scikit-learn, matplotlib, …) but neither Ray nor Optuna, and no
network. This script

1. downloads the cp312 manylinux wheels of ``ray[tune]`` and ``optuna`` at the versions
   installed here (what the tests ran with; a pin in ``.ci/constraints.txt`` wins), with every
   dependency (``pip download --python-version 3.12 --only-binary=:all:``, the constraints
   applied), plus pydantic (imported by parts of Ray);
2. keeps the wheels of packages the GPU machine lacks (``PRESENT`` lists what it has, read from
   the device notes) and unzips them into one ``site/`` folder;
3. drops the parts of Ray that tricksearch never imports (``STRIP``: Java jars, RLlib, Serve,
   LLM, the C++ API, the dashboard's web client) and every ``__pycache__``;
4. adds Fashion-MNIST's four ``.gz`` files under ``data/fashion-mnist/``;
5. writes one ``xz -9`` tar (default ``bundle/gpu-bundle.tar.xz``; ``bundle/`` is git-ignored, so
   the device tool carries it only when ``carry`` names it: 64 MiB at most with the working tree).

    python benchmarks/gpu_bundle.py [--out bundle/gpu-bundle.tar.xz] [--wheels bundle/wheels]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Top-level parts of the unpacked wheels that tricksearch never imports.
STRIP = (
    "ray/jars",
    "ray/rllib",
    "ray/serve",
    "ray/llm",
    "ray/cpp",
    "ray/dashboard/client/build",
)
#: Packages already on the GPU machine's Python (device notes, KINDS.md, 2026-11-17): their
#: wheels are not bundled. Names normalised (PEP 503).
PRESENT = frozenset(
    """attrs certifi charset-normalizer click cloudpickle filelock fsspec grpcio idna jinja2
    markupsafe msgpack numpy packaging pandas pillow protobuf psutil pyarrow python-dateutil
    pytz pyyaml requests six tqdm typing-extensions tzdata urllib3 aiohttp aiosignal frozenlist
    multidict yarl propcache aiohappyeyeballs prometheus-client scipy scikit-learn matplotlib
    tensorboard markdown werkzeug""".split()
)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "any",
)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename: str) -> str:
    """``ray-2.60.0-cp312-….whl`` -> ``ray``."""
    return normalise(filename.split("-", 1)[0])


def pinned(name: str, constraints: Path) -> str:
    """``name==version``: the pin in ``constraints`` when there is one, else the version
    installed here (what the tests ran with)."""
    if constraints.is_file():
        for line in constraints.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if normalise(line.split("==", 1)[0]) == normalise(name) and "==" in line:
                return line
    return f"{name}=={md.version(name)}"


def download(wheels: Path, constraints: Path) -> list[str]:
    """The wheels of ray[tune], optuna and pydantic for cp312 manylinux x86-64, with their
    dependencies, into ``wheels``; the requirements asked for."""
    ray = pinned("ray", constraints).replace("ray==", "ray[tune]==")
    wanted = [ray, pinned("optuna", constraints), "pydantic>=2,<3"]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    if constraints.is_file():
        cmd += ["-c", str(constraints)]
    subprocess.run([*cmd, *wanted], check=True)
    return wanted


def unpack(wheels: Path, site: Path, present: frozenset[str]) -> tuple[list[str], list[str]]:
    """Unzip the wheels the GPU machine lacks into ``site``; (kept, skipped) file names."""
    kept, skipped = [], []
    for wheel in sorted(wheels.glob("*.whl")):
        if wheel_project(wheel.name) in present:
            skipped.append(wheel.name)
            continue
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        kept.append(wheel.name)
    return kept, skipped


def strip(site: Path) -> int:
    """Remove :data:`STRIP` and ``__pycache__`` folders; bytes removed."""
    removed = 0
    doomed = [site / part for part in STRIP] + list(site.rglob("__pycache__"))
    for path in doomed:
        if path.is_dir():
            removed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
    return removed


def write_tar(stage: Path, out: Path) -> int:
    """``stage``'s contents (``site/``, ``data/``, ``manifest.json``) as one xz -9 tar; bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        for child in sorted(stage.iterdir()):
            tar.add(child, arcname=child.name)
    tmp.replace(out)
    return out.stat().st_size


def build(
    out: Path,
    wheels: Path,
    *,
    data: Path = FASHION_MNIST,
    fetch: bool = True,
    present: frozenset[str] = PRESENT,
    constraints: Path = ROOT / ".ci" / "constraints.txt",
) -> dict:
    """The whole preparation; the manifest (also inside the tar)."""
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = download(wheels, constraints) if fetch else []
    stage = out.parent / (out.name + ".stage")
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "site").mkdir(parents=True)
    kept, skipped = unpack(wheels, stage / "site", present)
    removed = strip(stage / "site")
    (stage / "data" / "fashion-mnist").mkdir(parents=True)
    for name in FASHION_FILES:
        if (data / name).is_file():
            shutil.copy2(data / name, stage / "data" / "fashion-mnist" / name)
    manifest = {
        "requested": wanted,
        "wheels": kept,
        "skipped_present_on_gpu_machine": skipped,
        "stripped": list(STRIP),
        "stripped_bytes": removed,
        "data": sorted(p.name for p in (stage / "data" / "fashion-mnist").iterdir()),
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["bundle_bytes"] = write_tar(stage, out)
    shutil.rmtree(stage)
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "bundle" / "gpu-bundle.tar.xz")
    p.add_argument("--wheels", type=Path, default=ROOT / "bundle" / "wheels")
    p.add_argument("--data", type=Path, default=FASHION_MNIST)
    p.add_argument("--no-download", action="store_true", help="use the wheels already there")
    p.add_argument("--max-mb", type=float, default=60.0, help="fail above this size")
    args = p.parse_args()
    manifest = build(args.out, args.wheels, data=args.data, fetch=not args.no_download)
    mb = manifest["bundle_bytes"] / 2**20
    print(f"{args.out}: {mb:.1f} MiB, {len(manifest['wheels'])} wheels")
    print(f"  bundled: {', '.join(wheel_project(w) for w in manifest['wheels'])}")
    print(f"  stripped {manifest['stripped_bytes'] / 2**20:.0f} MiB: {', '.join(STRIP)}")
    if mb > args.max_mb:
        sys.exit(f"the bundle is {mb:.1f} MiB, above --max-mb {args.max_mb:g}")


if __name__ == "__main__":
    main()
