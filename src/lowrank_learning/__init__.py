"""lowrank_learning: learning dynamics of low-rank RNNs in overlap space.

Reproducible companion to Y. Ger and O. Barak, "Learning reveals invisible structure in
low-rank RNNs", arXiv:2605.04115. ``import lowrank_learning as ll``; ``ll.<name>`` is the API.

The package is built in layers; each imports only from the layers below it (a test checks):

1. ``core``: errors and checks, activations, the architecture, overlaps and the metric,
   initial conditions, batches and the loss, the full network, the latent model, its adjoint
   and the compiled kernel, and the result cache.
2. ``tasks``: trial samplers and teachers.
3. ``learn``: learning-rate schedules, trajectories, the full-network and overlap-space
   learners, and multi-phase schedules.
4. ``analysis``: degeneracy, memory, decoding, statistics, predictions.
5. ``experiments``: the twins of E8, the validation jobs of E9, the performance benchmark.
6. the pipeline: ``plotting``, ``results``, ``sweeps``, ``cli``, ``reproduce``.
"""

# core
from .core.activations import ACTIVATIONS, gain, phi
from .core.adjoint import ensemble_value_and_grad, overlap_value_and_grad
from .core.architecture import Architecture
from .core.batch import Batch, loss_value
from .core.cache import memo
from .core.errors import (
    DivergenceError,
    InvalidOverlapError,
    InvalidParameterError,
    LowRankError,
    UnreachableOverlapError,
)
from .core.initial import RandomOverlaps, balanced_vectors, random_overlaps
from .core.latent import latent_inputs, overlap_gradient, overlap_loss, run_latent
from .core.metric import metric_structure, overlap_metric
from .core.network import network_loss, run_network
from .core.overlaps import (
    conserved_quantities,
    flatten,
    named,
    overlaps,
    sample_vectors,
    sigma_from_named,
    sigma_tolerance,
    unflatten,
    validate_sigma,
)
from .core.provenance import lowrank_version, provenance

# tasks
from . import tasks

# learn
from .learn import schedules
from .learn.overlap_space import RULES, flow_rhs, learn_overlaps, learn_overlaps_ensemble
from .learn.phases import Phase, ScheduleRun, run_schedule
from .learn.schedules import Constant, DropBelow, Piecewise
from .learn.trajectory import EnsembleTrajectory, Trajectory
from .learn.vectors import OPTIMIZERS, learn_vectors, redraw_gaussian
from .learn.mean_field import *  # noqa: F403 (the names in the module's __all__)

# analysis
from .analysis.agreement import *  # noqa: F403 (the names in the module's __all__)
from .analysis.exact_claims import *  # noqa: F403 (the names in the module's __all__)
from .analysis.decoding import *  # noqa: F403 (the names in the module's __all__)
from .analysis.degeneracy import (
    epochs_to_reach,
    equivalent_overlaps,
    equivalent_vectors,
    learning_speed,
    run_noisy_network,
)
from .analysis.memory import (
    balance,
    compare_visits,
    conservation_violation,
    conserved_drift,
    invisible_distance,
    overlap_distance,
    violation_history,
)
from .analysis.predictions import *  # noqa: F403 (the names in the module's __all__)
from .analysis.verdicts import (
    VERDICTS,
    Verdict,
    bootstrap_interval,
    combine,
    mean_test,
    sign_test,
)
from .analysis.stats import *  # noqa: F403 (the names in the module's __all__)

# experiments
from .experiments import twins
from .experiments.performance import *  # noqa: F403 (the names in the module's __all__)
from .experiments.large_n import *  # noqa: F403 (the names in the module's __all__)
from .experiments.closure import *  # noqa: F403 (the names in the module's __all__)
from .experiments.validation import *  # noqa: F403 (the names in the module's __all__)

# pipeline
from . import plotting
from .reproduce import Layout, find_root
from .results import load_results, save_results
from .sweeps import JobFailure, SchedulerUnreachableError, SweepError, grid, run_sweep

__version__ = lowrank_version()  # importlib.metadata; "0+unknown" in a source tree that is not installed

__all__ = sorted(name for name in dict(globals()) if not name.startswith("_") and name not in
                 ("lowrank_version", "core", "learn", "analysis", "experiments",
                  "results", "sweeps", "cli", "reproduce")) + ["__version__"]
