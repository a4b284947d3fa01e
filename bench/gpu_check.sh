#!/usr/bin/env bash
# The GPU check of issue 17 as one command (bench/gpu_check.py says what it measures):
#
#   bash bench/gpu_check.sh [--minutes 8] [--out DIR] [--smoke] [...]
#
# On a machine without network whose Python holds JAX, flax, optax and orbax but not MuJoCo,
# MJX or Brax: the wheels that bench/gpu_wheels.sh saved in .whl/ are installed into
# $DEX4D_SITE (default /tmp/site, no index, no dependencies) and put first on PYTHONPATH with
# this checkout, whose dex4d_jax/ imports as the package (envs/, experiments/ included).
# Where the Python already imports them all (or there is no .whl/), it is used as it is.
# The budget counts from here.
# Outputs: --out, else $OUT when set, else runs/gpu_check.
set -euo pipefail
export DEX4D_CHECK_START
DEX4D_CHECK_START=$(date +%s.%N)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
SITE=${DEX4D_SITE:-/tmp/site}
NEEDS="import mujoco, mujoco.mjx, brax, jaxopt, trimesh, ml_collections, tensorboardX"
if ! "$PYTHON" -c "$NEEDS" > /dev/null 2>&1 && compgen -G ".whl/*.whl" > /dev/null; then
  echo "installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
# The object library that bench/gpu_wheels.sh built (else the check builds it, about 45 s).
if [ -z "${DEX4D_OBJECT_CACHE:-}" ] && [ -d .whl/objects ]; then
  export DEX4D_OBJECT_CACHE="$PWD/.whl/objects"
fi
export PYTHONUNBUFFERED=1 DEX4D_CHECK_COMMAND="bash bench/gpu_check.sh"
exec "$PYTHON" bench/gpu_check.py "$@"
