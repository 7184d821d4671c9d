"""lowrank_learning: learning dynamics of low-rank RNNs in overlap space.

Reproducible companion to Y. Ger and O. Barak, "Learning reveals invisible structure in
low-rank RNNs", arXiv:2605.04115. ``import lowrank_learning as ll``; ``ll.<name>`` is the API.
"""

from . import schedules, tasks, twins
from .activations import ACTIVATIONS, gain, phi
from .architecture import Architecture
from .decoding import DecodingResult, decode, decode_stack, group_splits
from .degeneracy import (
    epochs_to_reach,
    equivalent_overlaps,
    equivalent_vectors,
    learning_speed,
    run_noisy_network,
)
from .errors import (
    DivergenceError,
    InvalidOverlapError,
    InvalidParameterError,
    LowRankError,
    UnreachableOverlapError,
)
from .initial import RandomOverlaps, balanced_vectors, random_overlaps
from .learning import OPTIMIZERS, RULES, flow_rhs, learn_overlaps, learn_overlaps_ensemble, learn_vectors
from .memory import (
    Phase,
    ScheduleRun,
    balance,
    compare_visits,
    conservation_violation,
    conserved_drift,
    invisible_distance,
    overlap_distance,
    run_schedule,
    violation_history,
)
from .metric import metric_structure, overlap_metric
from .predictions import (
    DegenerateEnsemble,
    curve_features,
    decode_from_curves,
    degenerate_ensemble,
    diffusion_coefficient,
    drift_overlaps,
    drift_vectors,
    mean_se,
    overlap_drift,
    probe_curves,
    reset_invisible,
    savings,
    savings_experiment,
)
from .network import network_loss, run_network
from .overlaps import (
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
from .results import load_results, save_results
from .sweeps import JobFailure, SchedulerUnreachableError, SweepError, grid, run_sweep
from .validation import (
    compare_nonlinear,
    e9_jobs,
    excess_kurtosis,
    fit_error_scaling,
    gaussian_distance,
    linear_exactness,
    loss_drop_epoch,
)
from .reduced import (
    ensemble_value_and_grad,
    latent_inputs,
    overlap_gradient,
    overlap_loss,
    overlap_value_and_grad,
    run_latent,
)
from .schedules import Constant, DropBelow, Piecewise
from .tasks import Batch
from .trajectory import EnsembleTrajectory, Trajectory

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "OPTIMIZERS", "RULES", "Architecture", "Batch", "DivergenceError",
    "InvalidOverlapError", "InvalidParameterError", "LowRankError", "Trajectory",
    "UnreachableOverlapError", "conserved_quantities", "flatten", "flow_rhs", "gain",
    "latent_inputs", "learn_overlaps", "learn_vectors", "metric_structure", "named",
    "network_loss", "overlap_gradient", "overlap_loss", "overlap_metric", "overlaps", "phi",
    "run_latent", "run_network", "sample_vectors", "sigma_from_named", "tasks", "unflatten",
    "validate_sigma", "__version__",
    "equivalent_vectors", "equivalent_overlaps", "run_noisy_network", "epochs_to_reach",
    "learning_speed", "Phase", "ScheduleRun", "run_schedule", "overlap_distance",
    "invisible_distance", "conserved_drift", "compare_visits", "save_results", "load_results",
    "DecodingResult", "decode", "decode_stack", "group_splits",
    "balanced_vectors", "random_overlaps", "RandomOverlaps",
    "grid", "run_sweep", "SweepError", "JobFailure", "SchedulerUnreachableError",
    "excess_kurtosis", "gaussian_distance", "fit_error_scaling", "loss_drop_epoch",
    "linear_exactness", "compare_nonlinear", "e9_jobs",
    "schedules", "twins", "Constant", "Piecewise", "DropBelow", "learn_overlaps_ensemble", "EnsembleTrajectory",
    "ensemble_value_and_grad", "overlap_value_and_grad", "sigma_tolerance", "conservation_violation", "balance",
    "violation_history",
    "DegenerateEnsemble", "degenerate_ensemble", "probe_curves", "curve_features", "decode_from_curves",
    "diffusion_coefficient", "overlap_drift", "drift_overlaps", "drift_vectors", "savings",
    "reset_invisible", "savings_experiment", "mean_se",
]
