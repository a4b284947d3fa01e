"""Point encoders (flax linen): Paired Point Encoding and the paper's two ablations.

All encoders read `points` of shape [..., N, 6], each row a pair `[p_i ; p_bar_i]` of a current
and a target point (Dex4D Eq. 1), and return a fixed-size feature vector.

* `paired`: one PointNet whose shared MLP sees each 6-D pair, then order-free pooling. The
  pair keeps the correspondence between a point and its target, so the encoder can read the
  rotation the object still has to make.
* `decoupled`: two PointNets, one on the current points and one on the target points, pooled
  separately: each cloud's shape and pose is seen, the correspondence is lost.
* `mlp`: the flattened points through an MLP: correspondence is kept, but order matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ENCODERS = ("paired", "decoupled", "mlp")
POOLINGS = ("mean", "max", "mean_max")


def pool(features: jax.Array, pooling: str, mask: jax.Array | None = None) -> jax.Array:
    """Order-free pooling over the point axis (-2), over points where `mask` is true.

    Args:
      features: [..., N, F] per-point features.
      pooling: one of POOLINGS.
      mask: optional [..., N] boolean; an all-false mask pools to zeros.

    Returns:
      [..., F] (`mean` or `max`) or [..., 2F] (`mean_max`, mean first).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if mask is None:
        mask = jnp.ones(features.shape[:-1], bool)
    weights = mask[..., None].astype(features.dtype)
    count = jnp.sum(weights, axis=-2)
    mean = jnp.sum(features * weights, axis=-2) / jnp.maximum(count, 1.0)
    maximum = jnp.max(jnp.where(mask[..., None], features, -jnp.inf), axis=-2)
    maximum = jnp.where(count > 0, maximum, 0.0)
    if pooling == "mean":
        return mean
    if pooling == "max":
        return maximum
    return jnp.concatenate([mean, maximum], axis=-1)


class PointNet(nn.Module):
    """Shared MLP applied to every point, then pooling.

    Attributes:
      hidden: sizes of the shared MLP's layers (the paper: [128, 128]).
      pooling: one of POOLINGS (the paper: `mean_max`).
      activation: nonlinearity after every layer.
    """

    hidden: Sequence[int] = (128, 128)
    pooling: str = "mean_max"
    activation: str = "elu"

    @nn.compact
    def __call__(self, points: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        act = getattr(nn, self.activation)
        x = points
        for i, size in enumerate(self.hidden):
            x = act(nn.Dense(size, name=f"shared_{i}")(x))
        return pool(x, self.pooling, mask)


class PointEncoder(nn.Module):
    """One of ENCODERS applied to paired points [..., N, 6].

    Attributes:
      kind: one of ENCODERS.
      hidden: shared-MLP sizes (PointNets) or hidden sizes (`mlp`).
      pooling: pooling of the PointNets.
      activation: nonlinearity.
    """

    kind: str = "paired"
    hidden: Sequence[int] = (128, 128)
    pooling: str = "mean_max"
    activation: str = "elu"

    @nn.compact
    def __call__(self, points: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        if points.shape[-1] != 6:
            raise ValueError(f"Expected paired points [..., N, 6], got shape {points.shape}.")
        if self.kind == "paired":
            return PointNet(self.hidden, self.pooling, self.activation, name="paired")(points, mask)
        if self.kind == "decoupled":
            current = PointNet(self.hidden, self.pooling, self.activation, name="current")
            target = PointNet(self.hidden, self.pooling, self.activation, name="target")
            return jnp.concatenate(
                [current(points[..., :3], mask), target(points[..., 3:], mask)], axis=-1
            )
        if self.kind == "mlp":
            if mask is not None:
                points = points * mask[..., None]
            x = points.reshape(*points.shape[:-2], -1)
            act = getattr(nn, self.activation)
            for i, size in enumerate(self.hidden):
                x = act(nn.Dense(size, name=f"mlp_{i}")(x))
            return x
        raise ValueError(f"Unknown encoder {self.kind!r}; valid: {', '.join(ENCODERS)}")
