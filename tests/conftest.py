"""Shared test setup: a persistent compilation cache, quiet XLA logs, and the files' order.

The suite runs on two processes (pytest-xdist, `-n 2 --dist loadfile` in pyproject.toml), each
taking one whole file at a time. Files are handed out in collection order, so the longest ones
(measured: the learning, DAgger and robot-environment files) are collected first, and the many
short files fill the gaps at the end.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# dex4d_jax first: it sets XLA's CPU flags (dex4d_jax/xla_flags.py) before JAX starts.
import dex4d_jax  # noqa: E402, F401
import jax  # noqa: E402

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("DEX4D_JAX_CACHE", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

# Longest first (seconds of one worker, from the slowest-tests list of `bash .ci/run` on an
# idle 2-core machine, docs/benchmarks.md "Test suite"): the learning file alone fills one
# worker for about 14 minutes while the other takes the next ones; the short files fill the
# gaps at the end, so that neither worker idles long while the other ends a long file. Files
# not listed follow in their usual order.
LONGEST_FIRST = ("test_learning.py",  # ~830: teacher, student, export, native MuJoCo
                 "test_gpu_check.py",  # (-m gpu_check only)
                 "test_robot_baselines.py",  # ~210: one robot rollout of three controllers
                 "test_notebooks.py",  # ~200
                 "test_resume.py",  # ~160
                 "test_dagger.py",  # ~130
                 "test_distributed.py",  # ~120
                 "test_ap2ap.py",  # ~110
                 "test_benchmark.py",  # ~100
                 "test_render.py",  # ~75
                 "test_robot_scene.py",  # ~70
                 "test_ik.py",  # ~50
                 "test_deploy.py", "test_env.py", "test_grasp.py", "test_contacts.py",
                 "test_export.py", "test_ap2ap_training.py")


def pytest_collection_modifyitems(session, config, items):
    """Orders the collected tests file by file, longest files first (stable within a file)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))
