"""Helpers moved out of the E6-E10 chapters: the E8 gap analysis, the twins' trajectories and
their figure. Each is checked against an independent reference (plain loops over the pairs,
the run's own start and end points)."""

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lowrank_learning as ll

matplotlib.use("Agg")
ARCH = ll.twins.ARCH
NAMES = list(ARCH.overlap_names)


def _reference_summary(g):
    """The chapter's gap analysis written out pair by pair with plain Python loops."""
    out = {}
    for kind, group in (("visible", ARCH.visible_names), ("invisible", ARCH.invisible_names)):
        medians = {o: float(np.median([abs(row[NAMES.index(o)]) for row in g])) for o in group}
        best = None
        for o in group:  # first maximum in the group's order, as argmax
            if best is None or medians[o] > medians[best]:
                best = o
        shares = []
        for row in g:
            total = sum(row[NAMES.index(o)] ** 2 for o in group)
            shares.append(row[NAMES.index(best)] ** 2 / total if total > 0 else np.nan)
        out[f"top_{kind}"] = best
        out[f"top_{kind}_share"] = np.array(shares)
    signs = [np.sign(row[NAMES.index(out["top_visible"])]) for row in g]
    out["top_visible_same_sign"] = max(sum(s > 0 for s in signs), sum(s < 0 for s in signs))
    out["uu_vv_tie"] = max(abs(row[NAMES.index("uu")] - row[NAMES.index("vv")]) for row in g)
    return out


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.just(10)),
              elements=st.floats(-3, 3, allow_nan=False, allow_subnormal=False)))
def test_gap_summary_matches_plain_loops(g):
    got = ll.twins.gap_summary(g)
    ref = _reference_summary(g)
    assert got["top_visible"] == ref["top_visible"]
    assert got["top_invisible"] == ref["top_invisible"]
    for k in ("top_visible_share", "top_invisible_share"):
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, equal_nan=True)
    assert got["top_visible_same_sign"] == ref["top_visible_same_sign"]
    assert got["uu_vv_tie"] == pytest.approx(ref["uu_vv_tie"], rel=1e-12, abs=0)


def test_gap_summary_planted_gap():
    """A gap planted in zz (invisible) and zu (visible) is found there, with shares near 1, and
    equal uu and vv gaps give a tie of 0."""
    rng = np.random.default_rng(1)
    g = 1e-3 * rng.standard_normal((10, 10))
    g[:, NAMES.index("zz")] += 2.0
    g[:, NAMES.index("zu")] -= 0.5
    g[:, NAMES.index("vv")] = g[:, NAMES.index("uu")]
    s = ll.twins.gap_summary(g)
    assert (s["top_visible"], s["top_invisible"]) == ("zu", "zz")
    assert np.all(s["top_visible_share"] > 0.99) and np.all(s["top_invisible_share"] > 0.99)
    assert s["top_visible_same_sign"] == 10
    assert s["uu_vv_tie"] == 0.0


@pytest.mark.parametrize("bad", [np.zeros((0, 10)), np.zeros((3, 9)), np.zeros(10),
                                 np.full((2, 10), np.nan)])
def test_gap_summary_bad_input(bad):
    with pytest.raises(ll.InvalidParameterError, match="gaps"):
        ll.twins.gap_summary(bad)


@pytest.fixture(scope="module")
def small_run():
    """A run_twins-shaped record (2 pairs, phases of 12 and 8 epochs, every 4th recorded) whose
    overlaps encode (member, epoch), so where each point came from can be checked exactly."""
    n, e1, e2, every = 2, 12, 8, 4
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2 * n, 4, 4))
    base = base + base.transpose(0, 2, 1)

    def at(member, epoch):
        return base[member] + 0.01 * epoch

    rec1, rec2 = np.arange(0, e1, every), np.arange(0, e2, every)
    return {"start": np.stack([at(i, 0) for i in range(n)]), "n_rejected": 0,
            "p1_loss": np.ones((2 * n, e1)), "p2_loss": np.ones((2 * n, e2)),
            "p1_record_epochs": rec1, "p2_record_epochs": rec2,
            "p1_sigma": np.stack([[at(m, e) for e in rec1] for m in range(2 * n)]),
            "p2_sigma": np.stack([[at(m, e1 + e) for e in rec2] for m in range(2 * n)]),
            "p1_final": np.stack([at(m, e1) for m in range(2 * n)]),
            "p2_final": np.stack([at(m, e1 + e2) for m in range(2 * n)]),
            "at": at}


def test_twin_trajectories_follow_the_run(small_run):
    """Each point is the right member's overlaps at the right epoch of both phases (the record
    encodes them), in the order of ``overlap_names``; twin 2 of pair i is member i + n_pairs."""
    r, at = small_run, small_run["at"]
    for pair in (0, 1):
        t = ll.twins.twin_trajectories(r, pair)
        assert t["phase1_epochs"] == 12
        np.testing.assert_array_equal(t["epochs"], [0, 4, 8, 12, 16, 20])
        assert t["twin1"].shape == t["twin2"].shape == (6, 10)
        for twin, member in (("twin1", pair), ("twin2", pair + 2)):
            for k, epoch in enumerate(t["epochs"]):
                S = at(member, epoch)
                np.testing.assert_allclose(t[twin][k], [S[ARCH.overlap_pair(o)] for o in NAMES], rtol=1e-12)


@pytest.mark.slow
def test_twin_trajectories_of_a_real_run():
    """On run_twins itself: the twins share their start (the pair's own start) and then part."""
    r = ll.twins.run_twins(n_pairs=1, epochs_phase1=4, epochs_phase2=2, n_trials=1, record_every=2, seed=3)
    t = ll.twins.twin_trajectories(r, 0)
    np.testing.assert_allclose(t["twin1"][0], [r["start"][0][ARCH.overlap_pair(o)] for o in NAMES], rtol=1e-6)
    np.testing.assert_array_equal(t["twin1"][0], t["twin2"][0])
    np.testing.assert_allclose(t["twin2"][-1], [r["p2_final"][1][ARCH.overlap_pair(o)] for o in NAMES], rtol=1e-6)
    assert np.max(np.abs(t["twin1"][-1] - t["twin2"][-1])) > 0


@pytest.mark.parametrize("pair", [-1, 2, 1.5])
def test_twin_trajectories_bad_pair(small_run, pair):
    with pytest.raises(ll.InvalidParameterError, match="pair"):
        ll.twins.twin_trajectories(small_run, pair)


def test_plot_twin_trajectories(small_run):
    """Page width, one line per overlap and twin (plus the teacher's visible values), fonts >= 9 pt."""
    import matplotlib.pyplot as plt

    ll.plotting.use_page_style()
    t = ll.twins.twin_trajectories(small_run, 0)
    fig = ll.plotting.plot_twin_trajectories(t, ll.twins.TEACHER_VISIBLE)
    try:
        assert fig.get_size_inches()[0] == pytest.approx(ll.plotting.COLUMN_WIDTH)
        top, bottom = fig.axes[:2]
        n_vis, n_inv = len(ARCH.visible_names), len(ARCH.invisible_names)
        assert len(top.lines) == 2 * n_vis + n_vis + 1   # twins, teacher, phase line
        assert len(bottom.lines) == 2 * n_inv + 1
        sizes = [txt.get_fontsize() for txt in fig.findobj(matplotlib.text.Text) if txt.get_text()]
        assert min(sizes) >= 9
    finally:
        plt.close(fig)
