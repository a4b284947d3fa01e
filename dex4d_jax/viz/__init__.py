"""What users look at: rollout files, rendered videos, the 3D viewer and learning curves.

- `rollout_file`: the `.npz` a rendered or simulated rollout is saved as (read by the viewer).
- `render`: offscreen MuJoCo videos of a policy's rollouts (`dex4d render`, `--video-every`).
- `viewer`: a Viser scene of a point track, a rollout or objects (`dex4d view`; optional extra).
- `plots`: learning curves from runs' `metrics.jsonl` (`dex4d plot`).
"""
