"""`dex4d export`: a trained student or teacher to one ONNX file with its contract inside.

The graph is built from the same parameters and mirrors the same flax modules that training
applies (onnx_graph.py); before anything is written, the graph runs in onnxruntime on random
inputs at batch 1 and 33 and must match the JAX function to `tolerance`, or the export fails.
The file is written to a temporary name and renamed, so a failed export leaves nothing.

Student contract ("dex4d-student/1"): inputs joint_pos [B, Q], joint_vel [B, V],
last_action [B, A], paired_points [B, P, 6] (float32), point_mask [B, P] (bool); outputs
action [B, A] in [-1, 1], next_joint_pos [B, Q], next_joint_vel [B, V]. Teacher contract
("dex4d-teacher/1"): observation [B, D] -> action [B, A]. Metadata (JSON strings, keys
`dex4d.*`): the contract, package version, environment (name and overrides), joint names
in action order, action mapping, control frequency, number of points, the points' frame,
input sizes, success threshold and hold steps, the checkpoint it came from, and the ONNX
opset the graph is written in (`dex4d.opset`: 17 unless asked otherwise, see opsets.py).
"""

from __future__ import annotations

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from dex4d_jax import contract
from dex4d_jax.export import onnx_graph, opsets
from dex4d_jax.student.policy import StudentInputs, make_policy, make_student
from dex4d_jax.training import checkpoint, policies, run_dir


def _numpy_tree(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), jax.device_get(tree))


def random_student_inputs(sizes: dict, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the student contract (about a third of the points hidden)."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    return {
        "joint_pos": normal(batch, sizes["joint_pos"]),
        "joint_vel": normal(batch, sizes["joint_vel"]),
        "last_action": rng.uniform(-1, 1, (batch, sizes["action"])).astype(np.float32),
        "paired_points": normal(batch, sizes["points"], 6, scale=0.1),
        "point_mask": rng.uniform(size=(batch, sizes["points"])) > 0.3,
    }


class LoadedPolicy:
    """A run's policy as JAX sees it: what `dex4d export` exports and checks against.

    Attributes:
      kind: contract.STUDENT_CONTRACT or contract.TEACHER_CONTRACT.
      env: the run's environment.
      config: the run's config.
      params: the network parameters (the student's, or the teacher's policy network's).
      step, checkpoint: where they came from.
      sizes: the input sizes.
      apply: `(inputs dict of numpy arrays) -> outputs dict`, jitted JAX, the reference.
    """

    def __init__(self, path: str, env):  # env: the run's environment, built by the caller
        step, ckpt = run_dir.resolve_checkpoint(path)
        folder = run_dir.run_of(ckpt)
        config = run_dir.read_run_config(folder)
        self.step, self.checkpoint, self.config = step, ckpt, config
        self.env = env
        if "dagger" in config:
            self._load_student()
        elif "ppo" in config:
            self._load_teacher()
        else:
            raise run_dir.RunDirError(f"{folder}/config.json is neither a teacher's nor a "
                                      "student's run.")

    def _load_student(self):
        env, config = self.env, self.config
        policy = make_policy(config, env)
        obs = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape), obs)
        template = policy.init(jax.random.PRNGKey(0), zeros)
        self.params = policies.load_student_params(self.checkpoint)
        checkpoint.check_fits(template, self.params, "student parameters", self.checkpoint)
        layout = env.student_layout
        qpos, qvel, last, _ = layout.split(zeros)
        self.kind = contract.STUDENT_CONTRACT
        self.sizes = {"joint_pos": int(qpos.shape[-1]), "joint_vel": int(qvel.shape[-1]),
                      "action": int(last.shape[-1]), "points": int(config.masking.num_keep)}

        @jax.jit
        def apply(params, x):
            out = policy.apply(params, StudentInputs(
                x["joint_pos"], x["joint_vel"], x["last_action"], x["paired_points"],
                x["point_mask"]))
            return {"action": jnp.clip(out["action"], -1.0, 1.0),
                    "next_joint_pos": out["next_qpos"], "next_joint_vel": out["next_qvel"]}

        self.apply = lambda x: jax.device_get(apply(self.params, x))

    def _load_teacher(self):
        env, config = self.env, self.config
        policy_fn, params, _, _, _ = policies.load_teacher_policy(
            self.checkpoint, env.observation_size, env.action_size)
        self.params = params[1]
        self.kind = contract.TEACHER_CONTRACT
        obs_key = config.network.policy_obs_key
        size = env.observation_size
        obs_size = int(size[obs_key][-1]) if isinstance(size, dict) else int(size)
        self.sizes = {"observation": obs_size, "action": int(env.action_size),
                      "points": int(config.network.num_points)}
        self.obs_key = obs_key
        jitted = jax.jit(policy_fn)

        def apply(x):
            obs = {obs_key: x["observation"]} if isinstance(size, dict) else x["observation"]
            return {"action": np.clip(jax.device_get(jitted(params, obs)), -1.0, 1.0)}

        self.apply = apply

    @property
    def env_settings(self) -> dict:
        """The run's environment settings (its config's `env` section without the name)."""
        return {k: v for k, v in self.config.env.to_dict().items() if k != "name"}

    def random_inputs(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs of this policy's contract."""
        if self.kind == contract.STUDENT_CONTRACT:
            return random_student_inputs(self.sizes, batch, seed)
        rng = np.random.default_rng(seed)
        obs = rng.standard_normal((batch, self.sizes["observation"])).astype(np.float32)
        obs[:, : 6 * self.sizes["points"]] *= 0.1
        return {"observation": obs}

    def onnx_model(self, opset: int = opsets.DEFAULT_OPSET) -> onnx.ModelProto:
        """The ONNX model of this policy, its metadata holding the environment's config.

        Args:
          opset: the ONNX opset to write (opsets.MIN_OPSET to opsets.newest_opset()).

        Raises:
          onnx_graph.MissingMirrorError: the network calls a flax module that has no ONNX
            mirror (checked on the network the run's config builds).
          opsets.OpsetError: an opset the graph cannot be written in.
        """
        meta = contract.metadata(self.kind, self.config.env.name,
                                 self.env_settings, self.env.deploy_info,
                                 self.sizes, self.env.config.to_dict(), self.checkpoint,
                                 self.step)
        params = _numpy_tree(self.params)
        key = jax.random.PRNGKey(0)
        if self.kind == contract.STUDENT_CONTRACT:
            network = make_student(self.config.network, self.env.action_size)
            inputs = random_student_inputs(self.sizes, 1).values()
            onnx_graph.check_mirrors(lambda: network.init(key, *inputs))
            return onnx_graph.student_model(params, self.config.network.to_dict(), self.sizes,
                                            meta, opset)
        networks = policies.teacher_networks(self.config, self.env.observation_size,
                                             self.env.action_size)
        onnx_graph.check_mirrors(lambda: networks.policy_network.init(key))
        meta["dex4d.observation_key"] = self.obs_key
        return onnx_graph.teacher_model(params, self.config.network.to_dict(),
                                        self.sizes["observation"], self.sizes["action"], meta,
                                        opset)


class ExportMismatchError(RuntimeError):
    """The ONNX graph does not compute what the JAX policy computes."""


def max_difference(session, policy: LoadedPolicy, batch: int, seed: int) -> float:
    """Largest |ONNX - JAX| over all outputs on random inputs."""
    inputs = policy.random_inputs(batch, seed)
    want = policy.apply(inputs)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs),
                   strict=True))
    return max(float(np.max(np.abs(got[k] - np.asarray(want[k])), initial=0.0)) for k in want)


def export_policy(path: str, out: str, env, tolerance: float = 1e-4, log=print,
                  opset: int = opsets.DEFAULT_OPSET) -> dict:
    """Exports the policy of a run or checkpoint folder to the ONNX file `out`.

    Args:
      path: a student or teacher run (its latest checkpoint) or checkpoint folder.
      out: the .onnx file to write.
      env: the run's environment (the evaluation environment of its config's `env` section);
        it gives the input sizes, the student's input layout and what a deployment needs.
      tolerance: largest accepted |ONNX - JAX| on random inputs.
      log: where to print the summary.
      opset: the ONNX opset to write (default 17, which onnxruntime and onnx2torch both run;
        see opsets.py).

    Returns {"contract", "step", "checkpoint", "max_difference", "out", "opset"}.

    Raises:
      ExportMismatchError: (nothing written) onnxruntime and JAX differ by more than
        `tolerance` on random inputs at batch 1 and 33.
      opsets.OpsetError: (nothing written) an opset the graph cannot be written in, or one
        the installed onnxruntime cannot run.
    """
    import onnxruntime as ort  # noqa: PLC0415

    opsets.check_opset(opset)
    policy = LoadedPolicy(path, env)
    model = policy.onnx_model(opset)
    data = model.SerializeToString()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise opsets.OpsetError(
            f"onnxruntime {ort.__version__} cannot run the opset-{opset} graph "
            f"({' '.join(str(e).split())[:200]}); nothing was written. Export at a lower "
            f"--opset (default {opsets.DEFAULT_OPSET}) or upgrade onnxruntime.") from e
    diff = max(max_difference(session, policy, batch, seed=batch) for batch in (1, 33))
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportMismatchError(f"The ONNX graph differs from the JAX policy by {diff:.3g} "
                                  f"(> {tolerance:g}) on random inputs; nothing was written.")
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    # mkstemp makes the file 0600; an exported policy is for others too (0644 under the
    # usual umask), as any file the user writes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)
    log(f"Exported the {policy.kind.split('/')[0].removeprefix('dex4d-')} of {policy.checkpoint} "
        f"(step {policy.step:,}) to {out} ({len(data) / 1e6:.1f} MB); ONNX vs JAX max "
        f"difference {diff:.2g} on random inputs; ONNX opset {opset}.")
    return {"contract": policy.kind, "step": policy.step, "checkpoint": policy.checkpoint,
            "max_difference": diff, "out": out, "opset": opset}



