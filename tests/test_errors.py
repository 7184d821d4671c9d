"""Bad input fails at once with a named exception and a message naming the problem."""

import numpy as np
import pytest

import lowrank_learning as ll


def test_architecture_fields():
    with pytest.raises(ll.InvalidParameterError, match="activation"):
        ll.Architecture(activation="relu")
    with pytest.raises(ll.InvalidParameterError, match="rank"):
        ll.Architecture(rank=0)
    with pytest.raises(ll.InvalidParameterError, match="n_out"):
        ll.Architecture(n_out=1.5)


def test_bad_sigma():
    arch = ll.Architecture()
    S = np.eye(4)
    S[0, 1] = 0.5
    with pytest.raises(ll.InvalidOverlapError, match="symmetric"):
        ll.validate_sigma(arch, S)
    S = np.eye(4)
    S[0, 1] = S[1, 0] = 2.0
    with pytest.raises(ll.InvalidOverlapError, match="positive semi-definite"):
        ll.learn_overlaps(arch, S, ll.tasks.exponential_filter(), lr=1e-3, epochs=1)
    with pytest.raises(ll.InvalidOverlapError, match=r"shape \(4, 4\)"):
        ll.validate_sigma(arch, np.eye(3))
    with pytest.raises(ll.InvalidParameterError, match="unknown overlap"):
        ll.sigma_from_named(arch, {"zq": 1.0}, fill_identity=True)
    with pytest.raises(ll.InvalidParameterError, match="missing overlaps"):
        ll.sigma_from_named(arch, {"zm": 0.1})


def test_bad_shapes_and_sizes():
    arch = ll.Architecture()
    task = ll.tasks.exponential_filter()
    with pytest.raises(ll.InvalidParameterError, match="X0 must have shape"):
        ll.learn_vectors(arch, np.ones((10, 3)), task, lr=1e-3, epochs=1)
    with pytest.raises(ll.InvalidParameterError, match="N must be"):
        ll.sample_vectors(arch, 0, seed=0)
    with pytest.raises(ll.InvalidParameterError, match="Batch.targets"):
        ll.Batch(np.zeros((2, 5, 1)), np.zeros((2, 4, 1)))
    with pytest.raises(ll.InvalidParameterError, match="Batch.loss"):
        ll.Batch(np.zeros((2, 5, 1)), np.zeros((2, 5, 1)), None, 0.1, "mse")
    with pytest.raises(ll.InvalidParameterError, match="lr"):
        ll.learn_overlaps(arch, np.eye(4), task, lr=-1.0, epochs=1)
    with pytest.raises(ll.InvalidParameterError, match="rule"):
        ll.learn_overlaps(arch, np.eye(4), task, lr=1e-3, epochs=1, rule="euler")
    with pytest.raises(ll.InvalidParameterError, match="optimizer"):
        ll.learn_vectors(arch, np.ones((10, 4)), task, lr=1e-3, epochs=1, optimizer="sgd")
    with pytest.raises(ll.InvalidParameterError, match="unknown vector"):
        ll.learn_overlaps(arch, np.eye(4), task, lr=1e-3, epochs=1, plastic=["q"])
    with pytest.raises(ll.InvalidParameterError, match="FlipFlop.wait_min"):
        ll.tasks.flip_flop(wait_min=5.0, wait_max=1.0)
    with pytest.raises(ll.InvalidParameterError, match="task must be"):
        ll.learn_overlaps(arch, np.eye(4), "flip_flop", lr=1e-3, epochs=1)


@pytest.mark.parametrize("space", ["vectors", "overlaps"])
def test_divergence_reports_epoch_and_lr(space):
    arch = ll.Architecture()
    task = ll.tasks.exponential_filter()
    X0 = ll.sample_vectors(arch, 100, seed=0)
    with pytest.raises(ll.DivergenceError, match=r"epoch \d+ with learning rate lr=5") as err:
        if space == "vectors":
            ll.learn_vectors(arch, X0, task, lr=5.0, epochs=300, progress=False)
        else:
            ll.learn_overlaps(arch, ll.overlaps(X0), task, lr=5.0, epochs=300, progress=False)
    assert err.value.lr == 5.0
    assert 0 < err.value.epoch < 300
