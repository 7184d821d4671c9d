"""The workloads of ``bench_epochs.py``: what each one times, and its goal.

Read by ``bench_epochs.py`` (which times them) and ``report.py`` (which describes them in
``benchmarks/README.md``). Plain data, no imports, so that the report runs without JAX.

Goals are milliseconds per training epoch on a 2-core CPU, judged on the median of the timed
runs. They are set so that every chapter's paper profile runs on such a machine in minutes:
workload E at 8 ms per epoch puts the 2 x 30000 epochs of the E8 twins at 8 minutes.
"""

# name: (short label, what one epoch of the workload is, goal in ms per epoch)
WORKLOADS = {
    "A": ("full linear network, N = 500",
          "full linear rank-1 network, N = 500, E1 task (one trial of 400 steps), one epoch of "
          "gradient descent (`ll.learn_vectors`)", 2.0),
    "B": ("linear overlap map",
          "rank-1 linear overlap map (`ll.learn_overlaps`, rule `exact`) on the same task", 0.1),
    "C": ("erf overlap dynamics, 128 trials",
          "erf overlap dynamics, flip-flop, 128 fresh trials of 400 steps per epoch", 5.0),
    "D": ("erf full network, N = 600 (E6)",
          "erf full network, N = 600, flip-flop, 10 fresh trials of 800 steps per epoch (the E6 "
          "setting)", 100.0),
    "E": ("20 erf overlap runs at once (E8)",
          "ensemble of 20 erf overlap runs in one compiled loop (`ll.learn_overlaps_ensemble`): "
          "phase 1 of the E8 twins, 10 on flip-flop and 10 on decision making, 128 fresh trials "
          "of 400 steps each, learning-rate drop inside the loop; the whole ensemble per epoch", 8.0),
}

GOALS_MS = {name: goal for name, (_, _, goal) in WORKLOADS.items()}
