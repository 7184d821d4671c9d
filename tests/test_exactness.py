"""Linear units: the exact overlap map equals full N-dimensional gradient descent (book/theory.md, section 5)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowrank_learning as ll


def _random_batch(rng, B, T, n_in, n_out, dt=0.1):
    inputs = rng.standard_normal((B, T, n_in))
    targets = 0.5 * rng.standard_normal((B, T, n_out))
    mask = (rng.random((B, T, n_out)) < 0.8).astype(float)
    mask[0, 0, 0] = 1.0
    return ll.Batch(inputs, targets, mask, dt, "sum_time")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    N=st.integers(5, 2000),
    rank=st.integers(1, 3),
    n_in=st.integers(1, 2),
    n_out=st.integers(1, 2),
    lr=st.floats(1e-3, 3e-2),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_exact_map_equals_full_gd(N, rank, n_in, n_out, lr, seed, data):
    arch = ll.Architecture(rank=rank, n_in=n_in, n_out=n_out)
    plastic = np.array(data.draw(st.lists(st.booleans(), min_size=arch.K, max_size=arch.K)))
    rng = np.random.default_rng(seed)
    batch = _random_batch(rng, 2, 12, n_in, n_out)
    X0 = ll.sample_vectors(arch, N, seed=seed)
    full = ll.learn_vectors(arch, X0, batch, lr=lr, epochs=6, plastic=plastic, progress=False)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), batch, lr=lr, epochs=6, plastic=plastic,
                               progress=False)
    scale = np.max(np.abs(full.sigma_all))
    np.testing.assert_allclose(theory.sigma_all, full.sigma_all, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(theory.loss, full.loss, rtol=1e-9, atol=1e-12)
    # frozen vectors really stay frozen: their overlaps with each other never move
    frozen = ~plastic
    np.testing.assert_array_equal(
        full.final_vectors[:, frozen], X0[:, frozen].astype(full.final_vectors.dtype)
    )


def test_paper_setup_e1_loss_curves_agree():
    """book/experiments.md, E1 at the paper's parameters: N=500, dt=0.05, T=20, eta=5e-3, 2000 epochs."""
    arch = ll.Architecture()
    task = ll.tasks.exponential_filter(c=0.2, dt=0.05, T_max=20.0)
    X0 = ll.sample_vectors(arch, 500, seed=0)
    full = ll.learn_vectors(arch, X0, task, lr=5e-3, epochs=2000, progress=False)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=5e-3, epochs=2000, progress=False)
    rel = np.max(np.abs(full.loss - theory.loss) / np.abs(full.loss))
    assert rel < 1e-6, rel
    assert full.loss[-1] < 0.1 * full.loss[0]  # it did learn


def test_fresh_trials_same_keys_in_both_spaces():
    """With a sampler, both learners see the same trials each epoch (same seed)."""
    arch = ll.Architecture()
    task = ll.tasks.with_label_noise(ll.tasks.exponential_filter(dt=0.1, T_max=5.0), std=0.1)
    X0 = ll.sample_vectors(arch, 50, seed=3)
    full = ll.learn_vectors(arch, X0, task, lr=1e-2, epochs=20, seed=7, progress=False)
    theory = ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=1e-2, epochs=20, seed=7, progress=False)
    np.testing.assert_allclose(theory.loss, full.loss, rtol=1e-9)
    other = ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=1e-2, epochs=20, seed=8, progress=False)
    assert not np.allclose(other.loss[1:], full.loss[1:])
