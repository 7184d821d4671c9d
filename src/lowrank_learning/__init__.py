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
5. ``experiments``: the learning rules of E7, the twins of E8, the validation jobs of E9, the
   performance benchmark.
6. the pipeline: ``plotting``, ``results``, ``sweeps``, ``cli``, ``reproduce``.
"""

# core
from .core.activations import ACTIVATIONS, gain, phi
from .core.adjoint import ensemble_value_and_grad, overlap_value_and_grad
from .core.architecture import Architecture
from .core.batch import Batch, loss_value
from .core.cache import memo, memo_or_divergence
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
from .core.conventions import (
    ARRAY_NAMES,
    CONVENTIONS,
    from_vectors,
    ImportedNetwork,
    load_network,
    save_network,
    simulate_convention,
    to_convention,
)

# tasks
from . import tasks

# learn
from .learn import schedules
from .learn.overlap_space import RULES, flow_rhs, learn_overlaps, learn_overlaps_ensemble
from .learn.phases import Phase, ScheduleRun, run_schedule
from .learn.schedules import Constant, DropBelow, Piecewise
from .learn.trajectory import EnsembleTrajectory, Trajectory
from .learn.vectors import OPTIMIZERS, learn_vectors, redraw_gaussian
from .learn.mean_field import (
    learn_mean_field,
    learn_mean_field_ensemble,
    mean_field_gradient,
    mean_field_nodes,
    NODE_SCHEMES,
    NodeCloud,
)

# analysis
from .analysis.agreement import (
    agree_to_rounding,
    differ_beyond_rounding,
    epochs_to_fraction,
    finite_size_scaling,
    learns_faster,
    ratio_exceeds,
    solves_task,
    speed_spread,
)
from .analysis.exact_claims import (
    approaches,
    breaks_conservation,
    conservation_bound,
    conservation_step_bound,
    conserved_to_bound,
    exceeds_by,
    nonzero_beyond_rounding,
    speedup_verdict,
)
from .analysis.decoding import (
    compare_decoding,
    decode,
    decode_stack,
    DecodingResult,
    DecodingTest,
    flip_assignments,
    group_splits,
    pair_permutation_test,
    pair_permutation_tests,
)
from .analysis.degeneracy import (
    activity_comparison,
    epochs_to_reach,
    equivalent_overlaps,
    equivalent_vectors,
    learning_speed,
    run_noisy_network,
    speed_summary,
)
from .analysis.spectrum import (
    connectivity_eigenvalues,
    discrete_time_eigenvalue,
    eigenvalue_summary,
)
from .analysis.memory import (
    balance,
    compare_visits,
    conservation_violation,
    conserved_drift,
    invisible_distance,
    overlap_distance,
    schedule_memory,
    violation_history,
)
from .analysis.predictions import (
    behaviour_verdict,
    curve_features,
    decode_from_curves,
    degenerate_ensemble,
    DegenerateEnsemble,
    diffusion_coefficient,
    drift_overlaps,
    drift_ratio_verdict,
    drift_vectors,
    invisible_savings_verdict,
    never_reached,
    overlap_drift,
    probe_curves,
    probe_verdict,
    relearning_verdict,
    reset_invisible,
    savings,
    savings_experiment,
)
from .analysis.diagnose import (
    diagnose,
    Diagnosis,
    gaussian_null,
    monte_carlo_verdict,
)
from .analysis.verdicts import (
    VERDICTS,
    Verdict,
    bootstrap_interval,
    combine,
    mean_test,
    sign_test,
)
from .analysis.stats import (
    bootstrap_error_scaling,
    ErrorScaling,
    excess_kurtosis,
    fit_error_scaling,
    gaussian_distance,
    levels_off_test,
    loss_drop_epoch,
    mean_se,
    overlap_error_curve,
    rank_correlation_test,
)

# experiments
from .experiments import twins
from .experiments.memory_laws import TWIN_STAGES, twins_memory
from .experiments.performance import (
    crossover_size,
    scaling_benchmark,
    seconds_per_epoch,
)
from .experiments.large_n import (
    E6_LIMIT_NODES,
    e6_limit_runs,
    e6_with_limit,
    LARGE_N_ACTIVATIONS,
    large_n_comparison,
    large_n_jobs,
    large_n_scaling,
    large_n_verdicts,
    LIMIT_NODES,
    savings_with_limit,
    trained_loadings,
    twin_limit_cost,
    vanishing_error_test,
    weighted_excess_kurtosis,
)
from .experiments.closure import (
    CLOSURE_CLAIM,
    closure_jobs,
    closure_verdict,
    ClosureResult,
    compare_redrawn,
    run_closure,
)
from .experiments.validation import (
    compare_nonlinear,
    e9_jobs,
    e9_task,
    E9_TASKS,
    INIT_OVERLAPS,
    levels_off_verdict,
    linear_exactness,
    scaling_table,
    seed_summary,
    teacher_batch,
    TEACHER_OVERLAPS,
)
from .experiments.learning_rules import (
    E7_KEYS,
    E7_LEARNERS,
    E7Analysis,
    E7Runs,
    e7_analysis,
    e7_runs,
    e7_verdicts,
)
from .experiments.own_network import (
    CONTEXT_RULES,
    context_task,
    departure_verdict,
    predict_learning,
    probe_network,
)

# pipeline
from . import plotting
from .reproduce import Layout, find_root
from .results import load_results, save_results
from .sweeps import JobFailure, SchedulerUnreachableError, SweepError, grid, run_sweep

__version__ = lowrank_version()  # importlib.metadata; "0+unknown" in a source tree that is not installed

__all__ = sorted(name for name in dict(globals()) if not name.startswith("_") and name not in
                 ("lowrank_version", "core", "learn", "analysis", "experiments",
                  "results", "sweeps", "cli", "reproduce")) + ["__version__"]
