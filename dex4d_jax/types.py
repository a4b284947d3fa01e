"""Type aliases shared across dex4d-jax."""

from __future__ import annotations

from typing import Any

import jax

PRNGKey = jax.Array
Params = Any
Observation = jax.Array
Metrics = dict[str, jax.Array]
