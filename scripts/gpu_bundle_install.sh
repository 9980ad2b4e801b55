#!/usr/bin/env bash
# Unpack gpu-bundle/ (built here by `make gpu-bundle`) on a bare GPU machine, offline.
#
# Usage, from the repository root:  bash scripts/gpu_bundle_install.sh [BUNDLE_DIR] [SITE_DIR]
#   BUNDLE_DIR  default gpu-bundle    (carried to the machine: it is git-ignored)
#   SITE_DIR    default .gpu-site     (replaced if it exists)
#   PYTHON      environment variable, default python3; it must be CPython 3.12 on x86_64
#               Linux, since the bundle's binary wheels (ray, pyarrow, pydantic-core ...) are.
#
# Nothing is installed into the interpreter and nothing is downloaded: the tree is only
# unpacked and put first on PYTHONPATH, so torch, torchvision and numpy stay the machine's
# own (the bundle holds none of them; the last step checks where each one imports from).
# The last line printed is the PYTHONPATH to use, absolute, so Ray's workers find it too:
#   export PYTHONPATH=$(bash scripts/gpu_bundle_install.sh | tail -1 | cut -d= -f2-)
set -euo pipefail

BUNDLE=${1:-gpu-bundle}
SITE=${2:-.gpu-site}
PYTHON=${PYTHON:-python3}

if [ ! -f "$BUNDLE/site.tar.xz" ]; then
  echo "gpu_bundle_install: no $BUNDLE/site.tar.xz here ($(pwd)); build it with" \
    "'make gpu-bundle' on a machine with PyPI access and carry the $BUNDLE folder" >&2
  exit 1
fi

"$PYTHON" - "$BUNDLE/site.tar.xz" "$SITE" <<'EOF'
"""Check the interpreter, then unpack the archive into a fresh SITE directory."""
import platform
import shutil
import sys
import tarfile
from pathlib import Path

archive, site = Path(sys.argv[1]), Path(sys.argv[2])
if sys.version_info[:2] != (3, 12) or platform.machine() != "x86_64":
    sys.exit(
        f"gpu_bundle_install: the bundle is for CPython 3.12 on x86_64, this is "
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.machine()}; set PYTHON to a 3.12 interpreter"
    )
partial = site.with_name(site.name + ".partial")
shutil.rmtree(partial, ignore_errors=True)
partial.mkdir(parents=True)
with tarfile.open(archive, "r:xz") as tar:
    # The "data" filter refuses absolute paths and links out of the tree; it keeps the
    # owner's execute bits (Ray's raylet and gcs_server are executables).
    tar.extractall(partial, filter="data")
shutil.rmtree(site, ignore_errors=True)
partial.rename(site)
print(f"gpu_bundle_install: unpacked {archive} into {site}")
EOF

SITE_ABS=$(cd "$SITE" && pwd)
ROOT_ABS=$(pwd)
PYTHONPATH="$SITE_ABS:$ROOT_ABS" "$PYTHON" - "$SITE_ABS" <<'EOF'
"""Import what the GPU check needs; refuse a bundle that shadows the machine's torch."""
import importlib
import sys

site = sys.argv[1]
modules = ["torch", "torchvision", "numpy", "ray", "ray.tune", "pydantic", "pyarrow.fs",
           "pandas", "hyperopt", "yaml", "pytest", "sklearn", "tensorboard"]
for name in modules:
    module = importlib.import_module(name)
    origin = "bundle" if module.__file__.startswith(site) else "machine"
    if name in ("torch", "torchvision", "numpy") and origin == "bundle":
        sys.exit(f"gpu_bundle_install: {name} imports from the bundle; rebuild it without {name}")
    version = getattr(module, "__version__", "")
    print(f"  {name:12} {version:14} from the {origin}")
EOF

echo "PYTHONPATH=$SITE_ABS:$ROOT_ABS"
