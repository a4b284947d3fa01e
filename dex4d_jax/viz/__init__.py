"""What users look at: rollout files, rendered videos, the 3D viewer and learning curves.

- `rollout_file`: the `.npz` a rendered or simulated rollout is saved as (read by the viewer).
- `render`: a policy's rollouts in MJX, recorded as rollout files and rendered to video
  (`dex4d render`, `dex4d train ... --video-every`).
- `video`: rollout files drawn offscreen by native MuJoCo (points, marks) and written as MP4;
  no JAX.
- `meshes`: MuJoCo geoms as triangle meshes with MuJoCo's colours; bodies posed from qpos.
- `viewer`: a Viser scene of a point track, a rollout or objects (`dex4d view`; optional extra);
  `viser_server`: its servers (the optional import, the address, start and stop).
- `plots`: learning curves from runs' `metrics.jsonl` (`dex4d plot`).
"""
