"""The optimiser step on the GPU, on the parameters where they are.

``_adam_kernel`` applies ``optim.adam_update`` (the host optimiser's own update, compiled for the
device) to every element; ``_time_constant_kernel``, for trained time constants, applies the lower
bounds and then recomputes the per-step constants from ``models.lif_coefficients``;
``_delay_steps_kernel``, for delays, clips trained delays to [0, max_delay] and recomputes their
integer steps with ``projections.delay_steps``. So a training epoch copies weights and moments
back only at its end.
"""
import numpy as np
from numba import cuda

from eventprop.backends.cuda import launch
from eventprop.models import lif_coefficients
from eventprop.optim import adam_update
from eventprop.projections import delay_steps


@cuda.jit(cache=True)
def _adam_kernel(theta, g, m, v, step):
    """One Adam step (``optim.AdamStep`` ``step``) on flat arrays, in their precision."""
    real = theta.dtype.type
    b1, d1 = real(step.beta1), real(1.0 - step.beta1)
    b2, d2 = real(step.beta2), real(1.0 - step.beta2)
    eps, eta, c1, c2 = real(step.eps), real(step.eta), real(step.c1), real(step.c2)
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, theta.shape[0], stride):
        mk, vk, delta = adam_update(g[k], m[k], v[k], b1, d1, b2, d2, eps, eta, c1, c2)
        m[k] = real(mk)
        v[k] = real(vk)
        theta[k] = theta[k] - real(delta)


@cuda.jit(cache=True)
def _time_constant_kernel(tau_m, tau_s, min_tau_m, min_tau_s, dt, alpha, beta, c, d):
    """After an optimiser step of trained time constants (flat arrays): the lower bounds
    tau_m >= min_tau_m, tau_s >= min_tau_s, then the per-step constants of
    ``models.lif_coefficients`` (float64, cast to the arrays' precision, as on the host)."""
    real = tau_m.dtype.type
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, tau_m.shape[0], stride):
        if tau_m[k] < real(min_tau_m):
            tau_m[k] = real(min_tau_m)
        if tau_s[k] < real(min_tau_s):
            tau_s[k] = real(min_tau_s)
        a, b_, c_, d_ = lif_coefficients(np.float64(tau_m[k]), np.float64(tau_s[k]), dt)
        alpha[k] = real(a)
        beta[k] = real(b_)
        c[k] = real(c_)
        d[k] = real(d_)


@cuda.jit(cache=True)
def _delay_steps_kernel(d, D, max_delay, dt, clip):
    """Delays d (ms, flat) and their steps D (int32): with ``clip``, d kept within
    [0, max_delay] first (as ``EventPropNetwork.clip_delays``); then D = ``delay_steps(d, dt)``
    (in float64, as ``projections.delay_steps_array`` on the host)."""
    real = d.dtype.type
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, d.shape[0], stride):
        x = d[k]
        if clip:
            if x < real(0):
                x = real(0)
            if x > real(max_delay):
                x = real(max_delay)
            d[k] = x
        D[k] = delay_steps(np.float64(x), dt)


def _flat(x):
    return x.reshape(x.size)


def adam(theta, g, m, v, step):
    """``_adam_kernel`` on device arrays of one parameter (any shape, C-contiguous)."""
    if theta.size:
        blocks, threads = launch.flat_launch(theta.size)
        _adam_kernel[blocks, threads](_flat(theta), _flat(g), _flat(m), _flat(v), step)


def time_constants(tau_m, tau_s, min_tau_m, min_tau_s, dt, alpha, beta, c, d):
    """``_time_constant_kernel`` on device arrays of one population."""
    if tau_m.size:
        blocks, threads = launch.flat_launch(tau_m.size)
        _time_constant_kernel[blocks, threads](
            _flat(tau_m), _flat(tau_s), float(min_tau_m), float(min_tau_s), float(dt),
            _flat(alpha), _flat(beta), _flat(c), _flat(d))


def delays(d, D, max_delay, dt, clip):
    """``_delay_steps_kernel`` on the device arrays of one projection's delays and steps."""
    if d.size:
        blocks, threads = launch.flat_launch(d.size)
        _delay_steps_kernel[blocks, threads](_flat(d), _flat(D), float(max_delay), float(dt),
                                             bool(clip))
