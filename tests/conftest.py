"""Tests run in float64: exactness claims (1e-9 relative) are checked at double precision."""

import jax

jax.config.update("jax_enable_x64", True)
