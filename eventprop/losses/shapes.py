"""The shapes of the losses, written once for the host and the GPU.

The read-out weights g(t) of the integral losses, the input accumulator of ``sum_weigh_input``,
the first-spike penalties and their derivatives, the spike time of a step, the clamped logarithm
of the cross-entropy and the forcing terms of the backward pass are scalar functions of the loss
code (``LOSS_CODES``) and scalars, compiled as the neuron equations of ``eventprop.models`` are
(``model_function``: numba ``njit`` on the CPU; a CUDA kernel that calls one compiles it as a
device function from the same source). The kernel of ``eventprop.backends.cuda.loss`` calls them
per sample and class.

The host losses (``eventprop.losses``) evaluate the same source on whole numpy arrays:
``on_arrays(f)`` runs f's Python source with numpy's functions in place of the scalar ones below
(``exp``, ``log``, ``minimum``, ``maximum``, ``where``). The host thereby keeps numpy's vectorised
exp and log, whose last bit can differ from the C library's exp and log that compiled code calls;
host results are those of the numpy expressions written out in these functions.

Rules for a shape (besides those of ``eventprop.models``: scalars only, no exceptions, no builtin
min/max): branch with ``if`` on the loss code only; a comparison of values goes through
``minimum``, ``maximum`` or ``where``, which work on arrays too; call no other shape (inside
``on_arrays`` it would be the compiled scalar function).
"""
import math
import types

import numpy as np

from eventprop.models import model_function

# ----------------------------------------------------------------------------------------------
# Loss types and the integer codes of the compiled shapes and the CUDA kernel
# ----------------------------------------------------------------------------------------------

INTEGRAL_LOSSES = ("sum", "sum_weigh_linear", "sum_weigh_exp", "sum_weigh_sigmoid",
                   "sum_weigh_input")
LI_LOSSES = INTEGRAL_LOSSES + ("max", "avg_xentropy")
FIRST_SPIKE_LOSSES = ("first_spike", "first_spike_exp")
LOSS_TYPES = LI_LOSSES + FIRST_SPIKE_LOSSES

# code = position in LOSS_TYPES: the integral losses come first (code <= SUM_WEIGH_INPUT)
LOSS_CODES = {loss_type: code for code, loss_type in enumerate(LOSS_TYPES)}
SUM = LOSS_CODES["sum"]
SUM_WEIGH_LINEAR = LOSS_CODES["sum_weigh_linear"]
SUM_WEIGH_EXP = LOSS_CODES["sum_weigh_exp"]
SUM_WEIGH_SIGMOID = LOSS_CODES["sum_weigh_sigmoid"]
SUM_WEIGH_INPUT = LOSS_CODES["sum_weigh_input"]
MAX = LOSS_CODES["max"]
AVG_XENTROPY = LOSS_CODES["avg_xentropy"]
FIRST_SPIKE = LOSS_CODES["first_spike"]
FIRST_SPIKE_EXP = LOSS_CODES["first_spike_exp"]

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------

ACCUMULATOR_GAIN = 0.01      # input current of the sum_weigh_input accumulator per input spike
SIGMOID_CENTRE = 0.5         # sum_weigh_sigmoid: g falls to 1/2 at t = SIGMOID_CENTRE T ...
SIGMOID_WIDTH = 0.2          # ... over a width SIGMOID_WIDTH T
LOG_FLOOR = 1e-300           # the cross-entropy takes -log max(S, LOG_FLOOR)

# ----------------------------------------------------------------------------------------------
# The functions the shapes are written with: scalar when compiled, numpy's in ``on_arrays``
# ----------------------------------------------------------------------------------------------

exp = math.exp
log = math.log


@model_function
def minimum(a, b):
    """min(a, b)."""
    return a if a < b else b


@model_function
def maximum(a, b):
    """max(a, b)."""
    return a if a > b else b


@model_function
def where(condition, a, b):
    """a if condition else b (both evaluated)."""
    return a if condition else b


def where_on_arrays(condition, a, b):
    """np.where(condition, a, b), a numpy scalar (not a 0-d array) where all three are scalars, so
    that the arithmetic after it is numpy's scalar arithmetic."""
    return np.where(condition, a, b)[()]


ARRAY_FUNCTIONS = {"exp": np.exp, "log": np.log, "minimum": np.minimum, "maximum": np.maximum,
                   "where": where_on_arrays}


def on_arrays(shape):
    """The shape function ``shape`` evaluated elementwise on numpy arrays (and scalars): its Python
    source run with ``ARRAY_FUNCTIONS`` in place of the scalar exp, log, minimum, maximum and
    where. Arguments broadcast as in numpy; the loss code stays a scalar."""
    f = shape.py_func
    return types.FunctionType(f.__code__, {**f.__globals__, **ARRAY_FUNCTIONS}, f.__name__,
                              f.__defaults__, f.__closure__)


# ----------------------------------------------------------------------------------------------
# Read-out of the integral losses: Z_c = sum_n g(t_n) V_c(t_n) dt / T
# ----------------------------------------------------------------------------------------------

@model_function
def readout_weight(loss, t, T):
    """Read-out weight g(t) of the integral losses:
        sum:               g = 1
        sum_weigh_linear:  g = 1 - t/T
        sum_weigh_exp:     g = exp(-t/T)
        sum_weigh_sigmoid: g = 1 / (1 + exp((t/T - 1/2) / 0.2))
    (sum_weigh_input reads out with the accumulator instead; any other code gives 1)."""
    if loss == SUM_WEIGH_LINEAR:
        return 1.0 - t / T
    if loss == SUM_WEIGH_EXP:
        return exp(-t / T)
    if loss == SUM_WEIGH_SIGMOID:
        return 1.0 / (1.0 + exp((t / T - SIGMOID_CENTRE) / SIGMOID_WIDTH))
    return 1.0


@model_function
def accumulator_update(V_a, I_a, dt, tau_acc):
    """Explicit Euler step of the sum_weigh_input accumulator, tau_acc dV_a/dt = -V_a + I_a:
        V_a <- V_a + (I_a - V_a) dt / tau_acc."""
    return V_a + (I_a - V_a) * dt / tau_acc


@model_function
def accumulator_input(n_spikes, gain):
    """Input current of the accumulator during a step: I_a = gain x (input spikes of the
    previous step); the gain is ACCUMULATOR_GAIN."""
    return gain * n_spikes


# ----------------------------------------------------------------------------------------------
# Cross-entropy of the read-out softmax S and its forcing of lambda_V
# ----------------------------------------------------------------------------------------------

@model_function
def neg_log(S):
    """Cross-entropy term of the label's probability S: -log max(S, LOG_FLOOR)."""
    return -log(maximum(S, LOG_FLOOR))


@model_function
def readout_forcing(onehot, S, tau_m, T, n_batch):
    """-dl/dZ_c = onehot_c - S_c of the cross-entropy, in the gradient scale of the reference
    (an extra 1/tau_m for the integral losses, 1/T for max) and per nominal batch:
        (onehot_c - S_c) / (tau_m,c T n_batch)
    (force_c of the integral losses, the jump of ``max``, A_out of avg_xentropy)."""
    return (onehot - S) / (tau_m * T * n_batch)


# ----------------------------------------------------------------------------------------------
# First-spike losses: l = -log softmax(-t / tau_0)_y + penalty(t_y)
# ----------------------------------------------------------------------------------------------

@model_function
def spike_time(step, dt, T):
    """First spike time of an output from the step of its first spike:
        t = step dt,   or T + 1 if it never spiked (step -1)."""
    return where(step >= 0, step * dt, T + 1.0)


@model_function
def first_spike_penalty(loss, t, T, tau_1, alpha):
    """Penalty of the label neuron's first spike time t, taken at min(t, T):
        first_spike:      alpha / (1.01 T - t)
        first_spike_exp:  alpha (exp(t / tau_1) - 1)."""
    t_pen = minimum(t, T)
    if loss == FIRST_SPIKE:
        return alpha / (1.01 * T - t_pen)
    return alpha * (exp(t_pen / tau_1) - 1.0)


@model_function
def first_spike_penalty_derivative(loss, t, T, tau_1, alpha):
    """d penalty / dt at min(t, T):
        first_spike:      alpha / (1.01 T - t)^2,   alpha / (0.01 T)^2 at t >= T
        first_spike_exp:  alpha / tau_1 exp(t / tau_1).
    At t = T it is the jump of lambda_V at the "phantom" spike of a label neuron that never
    fired."""
    if loss == FIRST_SPIKE:
        distance = where(t < T, 1.01 * T - t, 0.01 * T)
        return alpha / distance ** 2
    return alpha / tau_1 * exp(minimum(t, T) / tau_1)


@model_function
def first_spike_gradient(is_label, S, d_penalty, tau_0, n_batch):
    """dl/dt_c of output c's first spike, per nominal batch, with S = softmax(-t / tau_0) and
    d_penalty = penalty'(t_c):
        label:   ((1 - S_c) / tau_0 + d_penalty) / n_batch
        others:  -S_c / tau_0 / n_batch."""
    return where(is_label, (1.0 - S) / tau_0 + d_penalty, -S / tau_0) / n_batch
