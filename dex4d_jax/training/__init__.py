"""What every trainer shares: run folders, checkpoints, the epoch loop and rollout evaluation.

The split follows rsl_rl's runner/algorithm division: this package is the runner (a run
folder, its checkpoints, the loop over epochs with progress, metrics, TensorBoard, evaluation,
divergence and Ctrl-C handling), while `dex4d_jax.teacher` (PPO) and `dex4d_jax.student`
(DAgger) each hold only their algorithm's update and state. Nothing here imports an
environment: trainers are given theirs, as Brax's `train(environment=..., eval_env=...)`.

  run_dir.py     create, refuse or resume a run folder; find its checkpoints; its config
  checkpoint.py  the orbax checkpoint format: atomic writes, reading, fitting restored trees
  loop.py        loop state, schedule, device layout, one epoch, the epoch driver
  evaluation.py  deterministic rollouts of a policy on freshly sampled episodes
  policies.py    trained policies read back from checkpoints (for DAgger, export, evaluation)
"""
