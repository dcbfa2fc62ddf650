#!/bin/bash
# Fill .whl/ with the wheels a lent GPU machine lacks, for benchmarks/device_check.sh to carry.
# That machine's image holds torch, numpy, scipy, pandas, matplotlib, tensorboard, opencv and
# pytest for Python 3.12 on x86-64, but no Gymnasium, MuJoCo, dm_control, ALE or Hydra, and it
# cannot download. The device tool carries at most 64 MiB, so dm_control goes without its
# locomotion, soccer and test assets (no task here loads them): about 43 MiB in all.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,6p' "$0" | sed 's/^# //'
  echo "Usage: bash benchmarks/device_wheels.sh   (from the repository root; writes .whl/)"
  exit 0
fi
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl/full
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
  manylinux_2_17_x86_64 manylinux2014_x86_64; do platforms+=(--platform "$p"); done
# The versions this project is tested with here (../shared/machine-notes.md: mujoco 3.17.0 with
# dm_control 1.0.50).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl/full \
  gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==3.17.0 dm-control==1.0.50 dm-env==1.6 \
  dm-tree==0.1.10 pyopengl==3.1.10 glfw==2.11.0 ale-py==0.12.1 hydra-core==1.3.8 omegaconf==2.3.1
# Hydra's parser runtime is published as a source archive only; it is pure Python.
python3 -m pip wheel -q --no-deps -w .whl/full antlr4-python3-runtime==4.9.3
python3 - <<'EOF'
"""Copy the wheels to .whl/, dm_control's without the folders no task here loads."""
import shutil
import zipfile
from pathlib import Path

DROP = ("dm_control/locomotion/", "dm_control/mujoco/testing/", "dm_control/blender/",
        "dm_control/mjcf/test_assets/", "dm_control/suite/all_domains.png")
for wheel in sorted(Path(".whl/full").glob("*.whl")):
    target = Path(".whl") / wheel.name
    if not wheel.name.startswith("dm_control-"):
        shutil.copy(wheel, target)
        continue
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(DROP):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):  # list only the files kept
                lines = data.decode().splitlines()
                data = "\n".join(x for x in lines if not x.startswith(DROP)).encode() + b"\n"
            dst.writestr(item, data)
EOF
rm -rf .whl/full
du -sh .whl
