#!/usr/bin/env bash
# Saves in .whl/ (gitignored) the wheels that the GPU machine of issue 17 lacks, for CPython
# 3.12 on manylinux x86-64, so that bench/gpu_check.sh runs there without network:
#
#   bash bench/gpu_wheels.sh            # here, with network; then carry .whl with the code
#
# That machine's Python (3.12) has JAX with CUDA, flax, optax, orbax-checkpoint, numpy, scipy,
# absl-py, etils, jinja2, pyyaml, protobuf, pillow, matplotlib and tqdm, and not these. Each
# is named with one version and no dependencies (two versions of one name stop the install):
#   mujoco, mujoco-core     MuJoCo 4.0 (mujoco is the Python layer, mujoco-core the library;
#                           mujoco-studio, glfw and pyopengl, its viewer's, are not imported)
#   mujoco-mjx              MJX 3.17, the release that pairs with mujoco 4.0
#   brax                    0.14.2 (pyproject.toml's pin); its envs package imports jaxopt
#                           and trimesh; flask is for its viewer, not imported
#   ml-collections, tensorboardX   the configs and the training loop's scalars
# The versions are those the project's tested environment holds (pyproject.toml's ranges).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(
  mujoco==4.0.0
  mujoco-core==4.0.0
  mujoco-mjx==3.17.0
  brax==0.14.2
  jaxopt==0.8.5
  trimesh==5.2.0
  ml-collections==1.1.0
  tensorboardX==2.6.5
)
rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
count=$(ls .whl/*.whl | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
  echo "error: expected ${#WHEELS[@]} wheels in .whl/, found $count" >&2
  exit 1
fi
bytes=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$count wheels, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in .whl/" \
  "(the device tool carries at most 64 MiB with the working tree)"

# The stage-1 object library (1,024 bottles, a 1.5 MB .npz keyed by the library's version):
# building it there would cost about 45 s of the check's budget. bench/gpu_check.sh points
# DEX4D_OBJECT_CACHE at .whl/objects.
PROJECT_PYTHON=${PROJECT_PYTHON:-.venv/bin/python}
if [ -x "$PROJECT_PYTHON" ]; then
  DEX4D_OBJECT_CACHE=$PWD/.whl/objects "$PROJECT_PYTHON" -c "
from dex4d_jax import object_library
from dex4d_jax.experiments.configs import teacher
env = teacher.get_config('paper', env='ap2ap', stage=1).env
object_library.load_library(env.split, env.num_objects, env.object_seed, tuple(env.families))"
  echo "object library: $(ls .whl/objects) ($(du -sh .whl/objects | cut -f1))"
else
  echo "no $PROJECT_PYTHON (set PROJECT_PYTHON): the check builds the object library there"
fi
