"""Contact forces between the object and each fingertip, decoded from MJX's constraint forces.

MJX has no `mj_contactForce`; this module reads the same force out of `efc_force`, using the
fixed contact-slot layout of MJX's JAX implementation, or, for MJX's warp implementation, the
constraint rows of each world (tests/test_warp.py compares the two). tests/test_contacts.py
checks the result against native MuJoCo's `mj_contactForce`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from dex4d_jax import robot


class FingertipContacts:
    """World-frame contact force the object exerts on each fingertip (its distal link and pad).

    MJX slot layout relied on: MJX (JAX implementation, `data._impl.contact`) keeps every
    candidate contact of the model in a fixed slot, C slots in all, whether it is touching or
    not; a slot's constraint rows start at `contact.efc_address[c]`, known when the model is
    built, while the geoms a slot holds (`contact.geom`), its frame and friction are read from
    the data at each step. With the pyramidal cone and condim 3 each slot owns 4 rows, the
    forces along the cone's four edges; a slot that is not touching has zero force there.

    Forces are decoded from the four edges to the contact frame (normal, two tangents), turned
    into the world frame and summed per fingertip over the slots that pair the object's body
    with that fingertip's body (the body of each of robot.FINGERTIP_SITES), with the sign that
    makes them the force on the fingertip.
    """

    def __init__(self, mj_model: mujoco.MjModel, data: mjx.Data, object_body: int):
        """Reads the slot layout from `data`.

        Args:
          mj_model: the scene model (robot.FINGERTIP_SITES must exist in it).
          data: MJX data of that model (e.g. `mjx.make_data`); only its contact layout is read.
          object_body: body id of the object.

        Raises:
          ValueError: the model's friction cone is not pyramidal, or a contact slot's condim
            is not 3.
        """
        if mj_model.opt.cone != mujoco.mjtCone.mjCONE_PYRAMIDAL:
            raise ValueError("fingertip forces assume the pyramidal friction cone")
        self._warp = data.impl == mjx.Impl.WARP
        if self._warp:
            # Warp's contacts are a list shared by all worlds, filled at each step: every
            # contact's condim is its geoms' (or its explicit pair's).
            dims = np.concatenate([mj_model.geom_condim, mj_model.pair_dim])
            self._efc = None
        else:
            contact = data._impl.contact
            dims = np.asarray(contact.dim)
            self._efc = np.asarray(contact.efc_address)
        if np.any(dims != 3):
            raise ValueError("fingertip forces assume condim 3 for every contact")
        self._geom_body = np.asarray(mj_model.geom_bodyid)
        self._tips = np.array([mj_model.site_bodyid[mj_model.site(s).id]
                               for s in robot.FINGERTIP_SITES])
        self._object = object_body

    def forces(self, data: mjx.Data) -> jax.Array:
        """Forces on the fingertips from the object after `mjx.forward` or `mjx.step`.

        Args:
          data: MJX data of the model given at construction (one environment; vmap for many).

        Returns:
          [4, 3] forces in newtons, world frame, one row per robot.FINGERTIP_SITES entry;
          zeros when the model has no contact slots.
        """
        if self._warp:
            return self._warp_forces(data)
        if len(self._efc) == 0:
            return jnp.zeros((4, 3))
        contact = data._impl.contact
        edges = data._impl.efc_force[self._efc[:, None] + np.arange(4)]  # [C, 4]
        mu = contact.friction[:, :2]
        local = jnp.stack([edges.sum(-1), (edges[:, 0] - edges[:, 1]) * mu[:, 0],
                           (edges[:, 2] - edges[:, 3]) * mu[:, 1]], axis=-1)
        # The contact frame's first axis points from geom 1 to geom 2: the force on geom 2.
        world = jnp.einsum("ci,cij->cj", local, contact.frame)
        body = jnp.asarray(self._geom_body)[contact.geom]  # [C, 2]
        tips = jnp.asarray(self._tips)[:, None]
        on_second = (body[None, :, 1] == tips) & (body[None, :, 0] == self._object)
        on_first = (body[None, :, 0] == tips) & (body[None, :, 1] == self._object)
        sign = on_second.astype(jnp.float32) - on_first.astype(jnp.float32)  # [4, C]
        return sign @ world

    def _warp_forces(self, data: mjx.Data) -> jax.Array:
        """`forces` for MJX's warp implementation, from this world's constraint rows.

        Under vmap a world sees its own rows (`efc__force`, `efc__type`, `efc__id`, `nefc`)
        and the contact list of all worlds (`contact__*`, [naconmax]); a pyramidal contact
        row's id is its contact's index in that list, and the contact's rows start at
        `contact__efc_address[c, 0]`, in MuJoCo's edge order (+t1, -t1, +t2, -t2).
        """
        impl = data._impl
        force, kind, cid = impl.efc__force, impl.efc__type, impl.efc__id
        rows = jnp.arange(force.shape[-1])
        valid = (rows < jnp.reshape(impl.nefc, ())) & (
            kind == int(mujoco.mjtConstraint.mjCNSTR_CONTACT_PYRAMIDAL))
        c = jnp.where(valid, cid, 0)
        edge = jnp.clip(rows - impl.contact__efc_address[c, 0], 0, 3)
        mu = impl.contact__friction[c, :2]
        sign = jnp.where(edge % 2 == 0, 1.0, -1.0)
        local = jnp.stack([jnp.ones_like(force),
                           jnp.where(edge < 2, sign * mu[:, 0], 0.0),
                           jnp.where(edge >= 2, sign * mu[:, 1], 0.0)], axis=-1)
        local = local * jnp.where(valid, force, 0.0)[:, None]  # [R, 3]
        world = jnp.einsum("ri,rij->rj", local, impl.contact__frame[c])
        body = jnp.asarray(self._geom_body)[impl.contact__geom[c]]  # [R, 2]
        tips = jnp.asarray(self._tips)[:, None]
        on_second = (body[None, :, 1] == tips) & (body[None, :, 0] == self._object)
        on_first = (body[None, :, 0] == tips) & (body[None, :, 1] == self._object)
        sign = on_second.astype(jnp.float32) - on_first.astype(jnp.float32)  # [4, R]
        return sign @ world
