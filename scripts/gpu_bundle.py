"""Build gpu-bundle/: the pinned packages a bare GPU machine lacks, in at most 64 MiB.

The GPU machine we are lent has Python 3.12 with torch, torchvision, numpy, scikit-learn
and tensorboard (and their own dependencies), no network, and takes at most 64 MiB of
files per call. Ray 2.60's wheel alone is 79 MB, 33 MB of it a Java jar. This script
downloads the exact pins of constraints.txt for CPython 3.12 on x86_64 Linux (`pip
download`, binary wheels only, no dependency resolution), unpacks them into one
site-packages tree, drops what a one-node Tune sweep never loads (`DROPPED`), and packs
the rest into one tar.xz:

    gpu-bundle/site.tar.xz      the tree; unpack with scripts/gpu_bundle_install.sh
    gpu-bundle/MANIFEST.json    packages and versions, what was dropped, the sizes

Usage: python scripts/gpu_bundle.py [--out gpu-bundle] [--constraints constraints.txt]
(`make gpu-bundle`). Exit code 0 on success; 1 when a pin is missing, a download fails,
--out holds other files, or the bundle is over the limit (the message lists every part,
largest first). The project itself is not bundled: it travels as the working tree.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import lzma
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The most one call to the device machine carries, bytes; the whole gpu-bundle/ folder
# counts against it.
LIMIT_BYTES = 64 * 2**20

PYTHON_VERSION = "3.12"
PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_28_x86_64",  # pyarrow 26 and pandas 3 ship only this (torch 2.11 needs it too)
)

# What `import ray; from ray import tune; tune.Tuner(...).fit()` and the project's
# `cnn-tune run` import in the driver and in Ray's workers (traced with an import hook on
# a real digits sweep), less what torch, torchvision, numpy, scikit-learn and tensorboard
# already bring (networkx, scipy, jinja2, grpcio, pillow ...). Small packages the device
# may already have (filelock, fsspec, packaging, protobuf, typing-extensions) are bundled
# anyway so their version is the one locked and tested with Ray (pydantic needs
# typing-extensions>=4.16; Ray's generated protobuf code needs a recent protobuf).
PACKAGES = (
    # Ray itself and what `import ray` / `ray.init` need (ray's install_requires)
    "ray",
    "click",
    "filelock",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "attrs",
    "msgpack",
    "packaging",
    "protobuf",
    "PyYAML",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
    # ray[tune]: ray.tune imports pandas (ray.air.result) and pyarrow.fs (storage) at
    # import; tensorboardX is not imported when Tune's default loggers are off (cnn-tune
    # writes its own TensorBoard events), so it is left out.
    "pandas",
    "python-dateutil",
    "six",
    "pyarrow",
    "fsspec",
    "pydantic",
    "pydantic_core",
    "annotated-types",
    "typing-inspection",
    "typing_extensions",
    # cnn-tune: hyperopt sweeps (tuning/searchers_hyperopt.py; hyperopt needs
    # cloudpickle and tqdm; networkx and scipy come with torch and scikit-learn)
    "hyperopt",
    "cloudpickle",
    "tqdm",
    # scripts/gpu_check.py runs the gpu-marked tests with pytest
    "pytest",
    "pluggy",
    "iniconfig",
    "Pygments",
)

# Paths (relative to site-packages, fnmatch patterns, `*` crosses `/`) that are never
# loaded by a Tune sweep on one node, each with the reason it is safe to drop.
DROPPED = {
    "ray/jars/*": "Java workers (cross-language actors) only; 33 MB",
    "ray/dashboard/client/build/*": (
        "the dashboard's web UI; plain `ray` (not ray[default]) runs the dashboard without "
        "its HTTP server, so nothing serves these files"
    ),
    "pyarrow/libarrow_flight.so*": "Arrow Flight RPC; loaded only by pyarrow.flight; 30 MB",
    "pyarrow/libarrow_python_flight.so*": "pyarrow.flight's glue library",
    "pyarrow/_flight.*": "pyarrow.flight's extension module",
    "pyarrow/libarrow_s3.so*": (
        "S3 file system, 16 MB; Ray imports pyarrow.fs.S3FileSystem inside a try "
        "(ray/train/_internal/storage.py) and the GPU check stores results on local disk"
    ),
    "pyarrow/_s3fs.*": "pyarrow.fs's S3 module (pyarrow.fs imports it inside a try)",
    "pyarrow/include/*": "C++ headers for building extensions against pyarrow",
    "pyarrow/src/*": "C++ sources for building extensions against pyarrow",
    "pyarrow/tests/*": "pyarrow's own test suite",
    "pyarrow/_pyarrow_cpp_tests.*": "pyarrow's own C++ test runner",
    # The wheel holds three identical copies of each libarrow_python*; the extension
    # modules link the `.so.2600` soname, so the unversioned and full-version copies go.
    "pyarrow/libarrow_python*.so": "duplicate of the .so.<soname> copy the modules link",
    "pyarrow/libarrow_python*.so.*.*.*": "duplicate of the .so.<soname> copy the modules link",
    "pandas/tests/*": "pandas's own test suite",
    "*/__pycache__/*": "bytecode, rebuilt on first import",
}


class BundleError(Exception):
    """A download failed, a pin is missing, or the bundle does not fit."""


class Selection:
    """Which files of the unpacked wheels the bundle keeps, in bytes.

    (A plain class, not a dataclass: the tests load this script without registering it
    as a module, which dataclasses need.)

    Attributes:
        kept_bytes: Total size of the kept files, uncompressed.
        dropped_bytes: Per `DROPPED` pattern, the uncompressed bytes it removed.
    """

    def __init__(self) -> None:
        self.kept_bytes = 0
        self.dropped_bytes: dict[str, int] = {}


def normalize(name: str) -> str:
    """Return a distribution name in PEP 503 form (`PyYAML` -> `pyyaml`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(constraints: str, names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Return `name==version` for each of `names`, from the text of a constraints file.

    Raises:
        BundleError: A name has no `==` pin in the file.
    """
    pins = {}
    for line in constraints.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[normalize(name)] = version
    missing = [name for name in names if normalize(name) not in pins]
    if missing:
        raise BundleError(
            f"constraints.txt pins no version of {', '.join(missing)}; "
            "add them (make lock) or remove them from PACKAGES in scripts/gpu_bundle.py"
        )
    return {name: pins[normalize(name)] for name in names}


def dropped_by(relpath: str, patterns: dict[str, str] = DROPPED) -> str | None:
    """Return the `DROPPED` pattern that removes a site-packages path, or None to keep it."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(relpath, pattern):
            return pattern
    return None


def site_path(member: str) -> str | None:
    """Map a wheel member to its path in site-packages, or None for files we skip.

    `NAME.data/purelib/...` and `NAME.data/platlib/...` go to the site root; scripts,
    headers and data files of a `.data` folder are not needed to import anything.
    """
    parts = member.split("/")
    if parts[0].endswith(".data"):
        if len(parts) > 2 and parts[1] in ("purelib", "platlib"):
            return "/".join(parts[2:])
        return None
    return member


def check_size(sizes: dict[str, int], limit: int = LIMIT_BYTES) -> int:
    """Return the total of `sizes` (bytes per file); raise when it is over `limit`.

    Raises:
        BundleError: The total exceeds the limit; the message gives both, and every file.
    """
    total = sum(sizes.values())
    if total > limit:
        parts = ", ".join(
            f"{name} {size / 2**20:.1f} MiB"
            for name, size in sorted(sizes.items(), key=lambda item: -item[1])
        )
        raise BundleError(
            f"the bundle is {total / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB a device "
            f"call carries ({parts}); add patterns to DROPPED or move packages out of PACKAGES "
            "in scripts/gpu_bundle.py"
        )
    return total


def download(pins: dict[str, str], dest: Path) -> list[Path]:
    """Download each pinned wheel for CPython 3.12 on x86_64 Linux, without dependencies.

    Raises:
        BundleError: pip failed (no such wheel, no network); its output is in the message.
    """
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", PYTHON_VERSION]
    command += ["--implementation", "cp", "--abi", "cp" + PYTHON_VERSION.replace(".", "")]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["--dest", str(dest)]
    command += [f"{name}=={version}" for name, version in pins.items()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BundleError(f"pip download failed ({done.returncode}):\n{done.stderr.strip()}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != len(pins):
        raise BundleError(f"expected {len(pins)} wheels, pip left {len(wheels)} in {dest}")
    return wheels


def unpack(wheel: Path, site: Path, selection: Selection) -> None:
    """Extract a wheel into `site`, keeping file modes and skipping dropped paths."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            relpath = site_path(info.filename)
            if relpath is None or info.is_dir():
                continue
            pattern = dropped_by(relpath)
            if pattern is not None:
                selection.dropped_bytes[pattern] = (
                    selection.dropped_bytes.get(pattern, 0) + info.file_size
                )
                continue
            target = site / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            # Ray's raylet and gcs_server are executables; zip keeps the mode in the high bits.
            mode = (info.external_attr >> 16) & 0o777
            target.chmod(mode or 0o644)
            selection.kept_bytes += info.file_size


# Every member's time and owner in the archive, so the same pins give the same bytes.
ARCHIVE_MTIME = 1_577_836_800  # 2020-01-01 UTC; zip tools refuse times before 1980


def reproducible(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Clear what differs between two builds of the same files: time and owner."""
    member.mtime = ARCHIVE_MTIME
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def pack(site: Path, archive: Path) -> None:
    """Write the tree under `site` to one tar.xz (xz preset 9: 64 MiB dictionary)."""
    with tarfile.open(archive, "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
        for path in sorted(site.rglob("*")):
            if path.is_file():
                arcname = str(path.relative_to(site))
                tar.add(path, arcname=arcname, recursive=False, filter=reproducible)


BUNDLE_FILES = frozenset({"site.tar.xz", "MANIFEST.json"})


def clear_previous_bundle(out: Path) -> None:
    """Empty `out` for a new bundle, creating it; refuse a folder holding anything else.

    Raises:
        BundleError: `out` holds files this script did not write (a wrong `--out`).
    """
    out.mkdir(parents=True, exist_ok=True)
    strangers = sorted(path.name for path in out.iterdir() if path.name not in BUNDLE_FILES)
    if strangers:
        raise BundleError(
            f"--out {out} holds {', '.join(strangers[:5])}, which no bundle has; "
            "give an empty or new folder (default gpu-bundle)"
        )
    for name in BUNDLE_FILES:
        (out / name).unlink(missing_ok=True)


def build(out: Path, constraints: Path) -> dict:
    """Download, unpack, prune and pack the bundle into `out`; return its manifest."""
    pins = read_pins(constraints.read_text())
    clear_previous_bundle(out)
    with tempfile.TemporaryDirectory(prefix="gpu-bundle-") as scratch:
        wheels = download(pins, Path(scratch) / "wheels")
        site = Path(scratch) / "site"
        selection = Selection()
        for wheel in wheels:
            print(f"gpu-bundle: unpacking {wheel.name}", flush=True)
            unpack(wheel, site, selection)
        print("gpu-bundle: compressing (xz -9e, a few minutes)", flush=True)
        pack(site, out / "site.tar.xz")
    manifest = {
        "python": PYTHON_VERSION,
        "platforms": list(PLATFORMS),
        "packages": pins,
        "unpacked_bytes": selection.kept_bytes,
        "dropped_bytes": selection.dropped_bytes,
        "archive_bytes": (out / "site.tar.xz").stat().st_size,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sizes = {path.name: path.stat().st_size for path in out.iterdir()}
    manifest["bundle_bytes"] = check_size(sizes)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Build the bundle; print its size, or the reason it failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "gpu-bundle")
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out, args.constraints)
    except BundleError as error:
        print(f"gpu-bundle: {error}", file=sys.stderr)
        return 1
    dropped = sum(manifest["dropped_bytes"].values())
    print(
        f"gpu-bundle: {args.out} is {manifest['bundle_bytes'] / 2**20:.1f} MiB "
        f"(limit {LIMIT_BYTES / 2**20:.0f} MiB): {len(manifest['packages'])} packages, "
        f"{manifest['unpacked_bytes'] / 2**20:.0f} MiB unpacked, "
        f"{dropped / 2**20:.0f} MiB dropped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
