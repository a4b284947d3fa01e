"""Student "action world model" (SPEC section 6), flax linen.

Four tokens of width `width` (MLP embeddings of the joint angles, joint velocities and last
action, and a point token of the masked paired points that ignores hidden points) pass
through pre-LayerNorm self-attention blocks without positional encoding. The last-action
token decodes the action, the joint-angle token the next joint angles and the joint-velocity
token the next joint velocities. `arch="mlp"` is the paper's "w/o self-attention" ablation:
the four tokens are concatenated and an MLP feeds the same three heads. `encoder` picks the
point tokenizer: the Paired Point Encoding (a mean-max PointNet on the 6-D pairs, the
paper's), or the Table II ablations "decoupled" (two PointNets) and "mlp" (flattened points;
hidden points enter as zeros, so they still change nothing, but point order matters).

The next-state heads predict the change: `next_qpos = qpos + head(token)` (likewise for the
velocities), so an untrained head starts near the "nothing changes" predictor and the
learned part is the dynamics. The joint-angle and joint-velocity sizes come from the inputs;
a zero-size input (the `ap2ap_wrench` task has no joint angles) gets a learned constant
token and an empty prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dex4d_jax.networks.point_encoders import ENCODERS, PointEncoder

ARCHS = ("transformer", "mlp")


class _Embed(nn.Module):
    """Two-layer MLP embedding to `width`."""

    width: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] == 0:  # nothing to embed: a learned constant token
            token = self.param("token", nn.initializers.normal(1.0), (self.width,))
            return jnp.broadcast_to(token, (*x.shape[:-1], self.width))
        x = nn.elu(nn.Dense(self.width, name="dense_0")(x))
        return nn.Dense(self.width, name="dense_1")(x)


def _head(feat: jax.Array, size: int, name: str) -> jax.Array:
    if size == 0:
        return jnp.zeros((*feat.shape[:-1], 0), feat.dtype)
    return nn.Dense(size, name=name)(feat)


class _Block(nn.Module):
    """Pre-LayerNorm self-attention block over the token axis (-2)."""

    width: int
    num_heads: int
    mlp_ratio: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.LayerNorm(name="ln_attn")(x)
        x = x + nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.width, out_features=self.width,
            name="attn")(h, h)
        h = nn.LayerNorm(name="ln_mlp")(x)
        h = nn.gelu(nn.Dense(self.mlp_ratio * self.width, name="mlp_0")(h))
        return x + nn.Dense(self.width, name="mlp_1")(h)


class StudentNetwork(nn.Module):
    """Student network.

    Attributes:
      action_size: size of the action (22 on the robot).
      width: token width.
      num_layers: self-attention blocks ("transformer") or hidden layers ("mlp").
      num_heads: attention heads.
      point_hidden: shared-MLP sizes of the PointNet.
      arch: one of ARCHS.
      encoder: point tokenizer, one of point_encoders.ENCODERS.
    """

    action_size: int
    width: int = 128
    num_layers: int = 4
    num_heads: int = 4
    point_hidden: Sequence[int] = (128, 128)
    arch: str = "transformer"
    encoder: str = "paired"

    @nn.compact
    def __call__(
        self,
        qpos: jax.Array,
        qvel: jax.Array,
        last_action: jax.Array,
        points: jax.Array,
        visible: jax.Array,
    ) -> dict[str, jax.Array]:
        """Args: qpos [..., Q]; qvel [..., V]; last_action [..., A]; points [..., P, 6];
        visible [..., P] bool. Returns {"action": [..., A], "next_qpos": [..., Q],
        "next_qvel": [..., V]}."""
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown arch {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {self.encoder!r}; valid: {', '.join(ENCODERS)}")
        if points.shape[-1] != 6 or visible.shape != points.shape[:-1]:
            raise ValueError(f"Expected paired points [..., P, 6] and visibility [..., P], got "
                             f"shapes {points.shape} and {visible.shape}.")
        if last_action.shape[-1] != self.action_size:
            raise ValueError(f"Expected a last action of size {self.action_size}, got "
                             f"{last_action.shape[-1]}.")
        visible = visible.astype(bool)
        point_feat = PointEncoder(self.encoder, tuple(self.point_hidden), "mean_max",
                                  name="points")(points, visible)
        tokens = [
            _Embed(self.width, name="embed_qpos")(qpos),
            _Embed(self.width, name="embed_qvel")(qvel),
            _Embed(self.width, name="embed_action")(last_action),
            nn.Dense(self.width, name="embed_points")(point_feat),
        ]
        batch = jnp.broadcast_shapes(*(t.shape[:-1] for t in tokens))
        x = jnp.stack([jnp.broadcast_to(t, (*batch, self.width)) for t in tokens], axis=-2)
        if self.arch == "transformer":
            for i in range(self.num_layers):
                x = _Block(self.width, self.num_heads, name=f"block_{i}")(x)
            x = nn.LayerNorm(name="ln_out")(x)
            qpos_feat, qvel_feat, action_feat = x[..., 0, :], x[..., 1, :], x[..., 2, :]
        else:
            h = x.reshape(*batch, 4 * self.width)
            for i in range(self.num_layers):
                h = nn.elu(nn.Dense(self.width, name=f"mlp_{i}")(h))
            qpos_feat = qvel_feat = action_feat = h
        return {
            "action": nn.Dense(self.action_size, name="head_action")(action_feat),
            "next_qpos": qpos + _head(qpos_feat, qpos.shape[-1], "head_qpos"),
            "next_qvel": qvel + _head(qvel_feat, qvel.shape[-1], "head_qvel"),
        }
