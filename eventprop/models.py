"""Neuron and synapse models: forward step, threshold, stored spike data, adjoint step and jump.

Every function here is a scalar function of one neuron's state, written as the equations of the
reference (Wunderlich & Pehle 2021; Nowotny, Turner & Knight 2025). The engines loop over neurons,
samples and steps and call these; the same Python source is compiled for the CPU (numba ``njit``)
and for the GPU, so the maths lives in one place: the kernels of ``eventprop.backends.cuda`` call these ``njit``
functions directly, and numba compiles a CPU dispatcher called from a CUDA kernel as a CUDA device
function built from ``f.py_func`` (inlined, as on the CPU). Keep them device-compatible: scalar
arguments and results (tuples of scalars), ``math`` functions and numpy scalar types only, no
arrays, no exceptions, and no ``min``/``max`` builtins (their CUDA overloads need a GPU at compile
time, which ``tests/test_engine_cuda.py`` avoids when it compiles the kernels to PTX).

Notation: dt = time step, tau_m / tau_s membrane / synaptic time constants,
alpha = exp(-dt/tau_m), beta = exp(-dt/tau_s), theta = threshold.
Adjoints follow the reference convention (reverse time s):
    tau_m d(lambda_V)/ds = -lambda_V + A,   tau_s d(lambda_I)/ds = -lambda_I + lambda_V,
and the weight gradient of a synapse i -> j is  -tau_s,j * lambda_I,j  per presynaptic spike.
"""
import math

import numpy as np
from numba import njit

# Below this difference the tau_m == tau_s branch of the exact solution is used.
TAU_EQUAL_TOL = 1e-9


def model_function(f):
    """Compile a model equation for the CPU; the plain function stays available as ``.py_func``
    (numba compiles it from there when a CUDA kernel calls it)."""
    return njit(cache=True, inline="always")(f)


# ----------------------------------------------------------------------------------------------
# Exponential current synapse and LIF membrane (hidden LIF/hetLIF, spiking LIF outputs, LI outputs)
# ----------------------------------------------------------------------------------------------

@model_function
def lif_coefficients(tau_m, tau_s, dt):
    """Per-step constants of the exact solution of tau_m dV/dt = -V + I, tau_s dI/dt = -I.

    Returns (alpha, beta, c, d) with
        V <- alpha V + c I_used,        c = tau_s/(tau_m - tau_s) (alpha - beta)
        lambda_I <- ... + d (lambda_V - A),   d = tau_m/(tau_m - tau_s) (alpha - beta)
    and, for tau_m == tau_s, the limits c = alpha dt/tau_m, d = beta dt/tau_s.
    """
    alpha = math.exp(-dt / tau_m)
    beta = math.exp(-dt / tau_s)
    if abs(tau_m - tau_s) < TAU_EQUAL_TOL:
        c = alpha * dt / tau_m
        d = beta * dt / tau_s
    else:
        c = tau_s / (tau_m - tau_s) * (alpha - beta)
        d = tau_m / (tau_m - tau_s) * (alpha - beta)
    return alpha, beta, c, d


@model_function
def synapse_decay(I, beta):
    """Exponential current synapse between spikes: I(t + dt) = beta I(t)."""
    return beta * I


@model_function
def lif_membrane_update(V, I_used, alpha, c):
    """Exact step of tau_m dV/dt = -V + I for a current decaying with tau_s during the step:
    V(t + dt) = alpha V(t) + c I(t)."""
    return alpha * V + c * I_used


@model_function
def lif_imv(I_used, V_minus):
    """Stored at a spike: ImV = I_used - V^-, the estimate of tau_m dV/dt at the crossing
    (current at the start of the step, voltage at its end before the reset)."""
    return I_used - V_minus


@model_function
def lif_adjoint_update(lambda_V, lambda_I, A, alpha, beta, d):
    """Exact reverse-time step of the adjoints with constant forcing A over the step:
        lambda_V <- A + (lambda_V - A) alpha
        lambda_I <- A + (lambda_I - A) beta + d (lambda_V - A)    (old lambda_V)
    Returns (lambda_V, lambda_I)."""
    new_lambda_I = A + (lambda_I - A) * beta + d * (lambda_V - A)
    new_lambda_V = A + (lambda_V - A) * alpha
    return new_lambda_V, new_lambda_I


@model_function
def lif_spike_jump(lambda_V, rev_I_syn, theta, ImV):
    """Adjoint jump at a spike of a LIF neuron (reset to 0):
        lambda_V <- lambda_V + (theta lambda_V + sum_j w_ij (lambda_V,j - lambda_I,j)) / ImV
    rev_I_syn is the sum over postsynaptic neurons; loss terms dl/dt_k / ImV are added separately."""
    return lambda_V + (theta * lambda_V + rev_I_syn) / ImV


@model_function
def tau_m_gradient(lambda_V, V, I_used, tau_m, dt):
    """Sample of dL/dtau_m = integral lambda_V dV/dt dt over one step, dV/dt = (I - V)/tau_m."""
    return lambda_V * (I_used - V) / tau_m * dt


@model_function
def tau_s_gradient(lambda_I, I, tau_s, dt):
    """Sample of dL/dtau_s = integral lambda_I dI/dt dt over one step, dI/dt = -I/tau_s."""
    return -lambda_I * I / tau_s * dt


# ----------------------------------------------------------------------------------------------
# ALIF: LIF with an adaptive threshold theta + b,  tau_b db/dt = -b,  b <- b + b_incr at a spike
# ----------------------------------------------------------------------------------------------

@model_function
def alif_threshold_decay(b, rho):
    """Adaptation between spikes: b(t + dt) = rho b(t), rho = exp(-dt/tau_b)."""
    return rho * b


@model_function
def alif_imv(I_used, V_minus, b, tau_m, tau_b):
    """tau_m times the slope of the threshold function V - theta - b at the crossing:
    ImV = (I - V^-) + tau_m b / tau_b   (b decays, so the effective threshold falls)."""
    return I_used - V_minus + tau_m * b / tau_b


@model_function
def alif_spike_jump(lambda_V, lambda_b, rev_I_syn, theta, b, ImV, b_incr, tau_m, tau_b):
    """Adjoint jump at a spike of an ALIF neuron (V -> 0, b -> b + b_incr).

    With lambda_b the adjoint of b in the units of lambda_V (it decays with tau_b in reverse time),
    the exact jump of the hybrid system (threshold g = V - theta - b) is
        Q = lambda_V (theta + b - tau_m b/tau_b) - tau_m b_incr lambda_b / tau_b + rev_I_syn
        lambda_V <- lambda_V + Q / ImV
        lambda_b <- lambda_b - lambda_V(new)
    Returns (lambda_V, lambda_b)."""
    Q = lambda_V * (theta + b - tau_m * b / tau_b) - tau_m * b_incr * lambda_b / tau_b + rev_I_syn
    new_lambda_V = lambda_V + Q / ImV
    return new_lambda_V, lambda_b - new_lambda_V


# ----------------------------------------------------------------------------------------------
# Counter-based random numbers (dropout, membrane noise): reproducible for any thread layout
# ----------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MIX3 = np.uint64(0x2545F4914F6CDD1D)


@model_function
def uniform_hash(seed, a, b, c):
    """Uniform number in [0, 1) from integer coordinates (splitmix64 mixing)."""
    x = (np.uint64(seed) * _GOLDEN + np.uint64(a) * _MIX1 + np.uint64(b) * _MIX2
         + np.uint64(c) * _MIX3)
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    x = x ^ (x >> np.uint64(31))
    return float(x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@model_function
def normal_hash(seed, a, b, c):
    """Standard normal number from integer coordinates (Box-Muller on two hashed uniforms)."""
    u1 = uniform_hash(seed, a, b, 2 * c)
    u2 = uniform_hash(seed, a, b, 2 * c + 1)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
