"""Point masking for the student (SPEC section 6, Dex4D Sec. K), pure JAX.

Every function is jit- and vmap-able. Visibility is an explicit boolean mask carried beside
the points (True = visible); hidden points are never written as a magic value such as
xyz = 0, because a real point can sit at the origin.

Per episode, `plane_mask_indices` picks which `num_keep` (64) of the 128 keypoints the student
sees (the same indices for current and target points all episode). Per step,
`height_visibility` hides points by height and `add_noise` perturbs the current points;
`mask_paired_points` combines the per-step parts.

Design choices:

* Plane mask, filling to exactly `num_keep`: the plane passes through a random keypoint with
  a uniformly random unit normal; the kept side is `(p - anchor) . normal >= 0` (the anchor
  itself is always kept). If the kept side has more than `num_keep` points, a uniformly
  random subset of them is kept (random removal, so the kept part stays spread over its
  side). If it has fewer, all of them are kept and the missing points are the other-side
  points nearest the plane (as if the plane were shifted just far enough), so the kept set
  stays one contiguous cut of the object. Indices come from `jax.lax.top_k`, so they are
  always distinct.
* Noise goes on the current points only: the target points come from the planner, not from
  a camera. It is added to every selected current point, hidden or not (hidden points are
  ignored by the masked encoder anyway).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

VARIANTS = {"paper": (0.2, 1.0), "code": (0.0, 0.8)}


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """Student point-masking settings.

    Attributes:
      num_keep: points kept by the per-episode plane mask.
      variant: "paper" (height quantile h ~ U(0.2, 1.0)) or "code" (h ~ U(0, 0.8)).
      hide_above: probability of hiding a point above the height quantile.
      hide_below: probability of hiding a point at or below it.
      noise_std: std of the Gaussian noise on the current points (metres).
    """

    num_keep: int = 64
    variant: str = "paper"
    hide_above: float = 0.9
    hide_below: float = 0.05
    noise_std: float = 0.005


def random_plane(key: jax.Array, keypoints: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A plane through a random keypoint with a uniformly random unit normal.

    Args:
      key: PRNG key.
      keypoints: [N, 3].

    Returns:
      (anchor [3], normal [3]) with |normal| = 1.
    """
    k_anchor, k_normal = jax.random.split(key)
    anchor = keypoints[jax.random.randint(k_anchor, (), 0, keypoints.shape[0])]
    normal = jax.random.normal(k_normal, (3,), keypoints.dtype)
    normal = normal / jnp.maximum(jnp.linalg.norm(normal), 1e-12)
    return anchor, normal


def plane_mask(
    key: jax.Array, keypoints: jax.Array, num_keep: int = 64
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Plane mask that also returns its plane (see the module docstring for the fill rule).

    Args:
      key: PRNG key.
      keypoints: [N, 3] keypoints (object frame or current points), N >= num_keep.
      num_keep: number of distinct indices kept.

    Returns:
      (indices int32 [num_keep], anchor [3], normal [3]); the kept side is
      `(p - anchor) . normal >= 0`.
    """
    n = keypoints.shape[0]
    if num_keep > n:
        raise ValueError(f"num_keep={num_keep} exceeds the {n} keypoints.")
    k_plane, k_order = jax.random.split(key)
    anchor, normal = random_plane(k_plane, keypoints)
    signed = (keypoints - anchor) @ normal
    kept_side = signed >= 0
    # Kept-side points rank above all others (scores in [1, 2)), in random order; other-side
    # points rank by closeness to the plane (scores in (-1, 0]).
    score = jnp.where(kept_side, 1.0 + jax.random.uniform(k_order, (n,)), jnp.tanh(signed))
    _, indices = jax.lax.top_k(score, num_keep)
    return indices.astype(jnp.int32), anchor, normal


def plane_mask_indices(key: jax.Array, keypoints: jax.Array, num_keep: int = 64) -> jax.Array:
    """Per-episode plane mask: `num_keep` distinct int32 indices into `keypoints` [N, 3]."""
    return plane_mask(key, keypoints, num_keep)[0]


def height_visibility(
    key: jax.Array,
    points: jax.Array,
    variant: str = "paper",
    hide_above: float = 0.9,
    hide_below: float = 0.05,
) -> jax.Array:
    """Per-step height-based occlusion.

    A quantile level h is drawn (U(0.2, 1.0) for "paper", U(0, 0.8) for "code") and the
    threshold is the h-quantile of the points' z values; points above it are hidden with
    probability `hide_above`, the others with probability `hide_below`.

    Args:
      key: PRNG key.
      points: [P, 3] current points in the world/base frame, z up.
      variant: one of VARIANTS.

    Returns:
      bool [P], True where visible.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    low, high = VARIANTS[variant]
    k_h, k_hide = jax.random.split(key)
    level = jax.random.uniform(k_h, (), minval=low, maxval=high)
    z = points[..., 2]
    threshold = jnp.quantile(z, level)
    hide_p = jnp.where(z > threshold, hide_above, hide_below)
    return jax.random.uniform(k_hide, z.shape) >= hide_p


def add_noise(key: jax.Array, points: jax.Array, std: float = 0.005) -> jax.Array:
    """Adds i.i.d. Gaussian noise N(0, std^2) to every coordinate of `points`."""
    return points + std * jax.random.normal(key, points.shape, points.dtype)


def mask_paired_points(
    key: jax.Array,
    paired: jax.Array,
    indices: jax.Array,
    config: MaskingConfig = MaskingConfig(),
) -> tuple[jax.Array, jax.Array]:
    """One step of the student's observation masking.

    Args:
      key: PRNG key for this step.
      paired: [N, 6] paired points [current ; target] (N = 128).
      indices: [K] episode indices from `plane_mask_indices` (K = 64), used for both the
        current and the target points.
      config: MaskingConfig.

    Returns:
      (paired [K, 6] with noisy current points and exact targets, visible bool [K]).
    """
    k_vis, k_noise = jax.random.split(key)
    selected = paired[indices]
    current, target = selected[:, :3], selected[:, 3:]
    visible = height_visibility(
        k_vis, current, config.variant, config.hide_above, config.hide_below
    )
    current = add_noise(k_noise, current, config.noise_std)
    return jnp.concatenate([current, target], axis=-1), visible
