"""Adam and the learning-rate schedules."""
import math
from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from eventprop.models import model_function

AdamStep = namedtuple("AdamStep", ["beta1", "beta2", "eps", "eta", "c1", "c2"])
AdamStep.__doc__ = ("The constants of one Adam step: decay rates, epsilon, learning rate and the "
                    "bias corrections c1 = 1 - beta1^t, c2 = 1 - beta2^t (Python floats).")


@model_function
def adam_update(g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, eta, c1, c2):
    """Adam for one parameter with gradient g and moments m, v:
        m <- beta1 m + (1 - beta1) g,    v <- beta2 v + (1 - beta2) g^2,
        step = eta (m / c1) / (sqrt(v / c2) + eps),    theta <- theta - step.
    Every operation is rounded in the precision of the arguments (pass them all in the
    parameter's dtype). Returns (m, v, step). Compiled for the CPU and, called from a kernel, for
    the GPU."""
    m = m * beta1 + one_minus_beta1 * g
    v = v * beta2 + one_minus_beta2 * g * g
    return m, v, eta * (m / c1) / (math.sqrt(v / c2) + eps)


@njit(cache=True)
def adam_arrays(theta, g, m, v, step, index):
    """``adam_update`` on flat arrays (in place), in the moments' precision: on the elements
    ``index`` only (the existing synapses of a sparse projection), or on all where it is
    empty."""
    real = m.dtype.type
    b1, d1 = real(step.beta1), real(1.0 - step.beta1)
    b2, d2 = real(step.beta2), real(1.0 - step.beta2)
    eps, eta, c1, c2 = real(step.eps), real(step.eta), real(step.c1), real(step.c2)
    some = index.shape[0] > 0
    for q in range(index.shape[0] if some else theta.shape[0]):
        k = index[q] if some else q
        m[k], v[k], delta = adam_update(g[k], m[k], v[k], b1, d1, b2, d2, eps, eta, c1, c2)
        theta[k] -= theta.dtype.type(delta)


ALL_ELEMENTS = np.zeros(0, dtype=np.int64)      # ``adam_arrays``: no index, every element

# Parameters of at least this many elements take their Adam step in parts on the engine's
# threads (``adam_in_parts``; the same values: every element is updated on its own). Smaller
# ones are not worth waking the threads (a Yin-Yang network takes thousands of small steps).
PARALLEL_ADAM_SIZE = 1 << 20


@njit(parallel=True, cache=True)
def adam_in_parts(theta, g, m, v, step, n_parts):
    """``adam_arrays`` over every element of flat arrays, in ``n_parts`` parts in parallel."""
    size = theta.shape[0]
    for part in prange(n_parts):
        lo, hi = part * size // n_parts, (part + 1) * size // n_parts
        adam_arrays(theta[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], step, ALL_ELEMENTS)


class Adam:
    """Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    theta <- theta - eta m_hat / (sqrt(v_hat) + eps), bias-corrected with the step count t >= 1.

    The state (t, m, v by parameter name) lives here. A backend that steps the parameters where
    it keeps them (the GPU) takes the step's constants from ``begin_step``, the moments from
    ``moments``, and gives its newer moments back through ``set_moments``. ``rates`` gives
    parameters a learning rate of their own (e.g. the delays' ETA_DELAY), which the learning
    rate of each step (and its schedule) does not change; ``for_parameter`` applies it."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, rates=None):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.rates = dict(rates or {})
        self.m, self.v = {}, {}
        self.t = 0

    def for_parameter(self, step, name):
        """The ``AdamStep`` ``step`` with the learning rate of parameter ``name``."""
        return step._replace(eta=float(self.rates[name])) if name in self.rates else step

    def begin_step(self, eta):
        """Count a new step; its ``AdamStep`` constants for learning rate ``eta``."""
        self.t += 1
        return AdamStep(float(self.beta1), float(self.beta2), float(self.eps), float(eta),
                        1.0 - self.beta1 ** self.t, 1.0 - self.beta2 ** self.t)

    def moments(self, name, like):
        """The moment arrays (m, v) of parameter ``name``; zeros shaped as ``like`` at first."""
        if name not in self.m:
            self.m[name] = np.zeros_like(like)
            self.v[name] = np.zeros_like(like)
        return self.m[name], self.v[name]

    def set_moments(self, name, m, v):
        """Newer values of the moments of ``name``, copied into the arrays of ``moments``."""
        self.m[name][...] = m
        self.v[name][...] = v

    def step(self, params, grads, eta, names, existing=None):
        """One update of params[name] for every name in ``names`` (in place, on the host).
        ``existing``: {name: flat indices} of the existing synapses of sparse projections, the
        only elements of those parameters that are updated (the others have zero gradients,
        zero moments and no step)."""
        step = self.begin_step(eta)
        existing = existing or {}
        for name in names:
            g = np.ascontiguousarray(grads[name])
            m, v = self.moments(name, g)
            theta = params[name]
            flat = theta.reshape(-1)          # a view where theta is contiguous
            arrays = (flat, g.reshape(-1), m.reshape(-1), v.reshape(-1),
                      self.for_parameter(step, name))
            if name not in existing and flat.size >= PARALLEL_ADAM_SIZE:
                adam_in_parts(*arrays, numba.get_num_threads())
            else:
                adam_arrays(*arrays, existing.get(name, ALL_ELEMENTS))
            if not np.shares_memory(flat, theta):
                theta[...] = flat.reshape(theta.shape)

    def state(self):
        """Arrays and step count, for checkpoints."""
        state = {"adam_t": np.array(self.t)}
        state.update({f"adam_m/{k}": v for k, v in self.m.items()})
        state.update({f"adam_v/{k}": v for k, v in self.v.items()})
        return state

    def load_state(self, state):
        self.t = int(state["adam_t"])
        self.m = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_m/")}
        self.v = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_v/")}


class ExponentialDecay:
    """Yin-Yang learning rate: rate x ``decay`` at the start of every epoch (also the
    first, so epoch e uses eta * decay^(e+1))."""

    def __init__(self, eta, decay):
        self.rate = eta
        self.decay = decay

    def start_epoch(self):
        self.rate *= self.decay

    def after_trial(self):
        pass

    def end_of_epoch(self, epoch, accuracy):
        return False

    def state(self):
        return {"lr_rate": np.array(self.rate)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])


class LearningRateSchedule:
    """SHD/SSC learning rate.

    Ease-in: the effective rate starts at target / 1000 when a run starts and is multiplied by
    ``ease_in_factor`` after every trial, training or evaluation, until it reaches the target.
    Plateau: at the end of every epoch, with accuracy a (validation, or training, as chosen by the
    caller), E1 <- alpha1 E1 + (1 - alpha1) a and E2 <- alpha2 E2 + (1 - alpha2) a (both from 0);
    when more than ``min_epochs_fixed`` epochs have passed since the last reduction and E1 <= E2,
    the target is multiplied by ``factor`` and the effective rate jumps to it.

    A resumed run continues with the saved effective rate (the original restarts the ease-in)."""

    def __init__(self, eta, ease_in_factor=1.05, alpha1=0.8, alpha2=0.95, factor=0.5,
                 min_epochs_fixed=300):
        self.target = eta
        self.rate = eta / 1000.0
        self.ease_in_factor = ease_in_factor
        self.alpha1, self.alpha2 = alpha1, alpha2
        self.factor = factor
        self.min_epochs_fixed = min_epochs_fixed
        self.ema1 = self.ema2 = 0.0
        self.last_reduction = 0

    def start_epoch(self):
        pass

    def after_trial(self):
        """Ease-in step; returns the rate for the next trial."""
        self.rate = min(self.rate * self.ease_in_factor, self.target)
        return self.rate

    def end_of_epoch(self, epoch, accuracy):
        """EMA plateau test; returns True when the target was reduced."""
        self.ema1 = self.alpha1 * self.ema1 + (1.0 - self.alpha1) * accuracy
        self.ema2 = self.alpha2 * self.ema2 + (1.0 - self.alpha2) * accuracy
        if epoch - self.last_reduction > self.min_epochs_fixed and self.ema1 <= self.ema2:
            self.target *= self.factor
            self.rate = self.target
            self.last_reduction = epoch
            return True
        return False

    def state(self):
        """Everything a checkpoint needs to continue exactly."""
        return {"lr_rate": np.array(self.rate), "lr_target": np.array(self.target),
                "lr_ema1": np.array(self.ema1), "lr_ema2": np.array(self.ema2),
                "lr_last_reduction": np.array(self.last_reduction)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])
        self.target = float(state["lr_target"])
        self.ema1 = float(state["lr_ema1"])
        self.ema2 = float(state["lr_ema2"])
        self.last_reduction = int(state["lr_last_reduction"])
