"""The loss shapes of ``eventprop.losses.shapes``: every compiled shape against its closed form
(numpy) at several points, the penalty derivatives against finite differences of the penalties,
the host's array evaluation (``on_arrays``) against the numpy expressions, and the single source:
the host losses and the CUDA loss kernel use these functions and hold no formula of their own."""
import ast
import inspect

import numpy as np
import pytest

from eventprop import losses
from eventprop.backends.cuda import loss as losses_cuda
from eventprop.losses import shapes

T = 20.0
TIMES = np.array([0.0, 0.3, 2.5, 7.0, 10.0, 13.7, 19.9, 20.0])
TAU_1, ALPHA, TAU_0 = 8.0, 0.03, 1.5
RTOL = 4e-16          # compiled exp/log (C library) against numpy's: at most an ulp or so

READOUT = {"sum": lambda t: np.ones_like(t),
           "sum_weigh_linear": lambda t: 1.0 - t / T,
           "sum_weigh_exp": lambda t: np.exp(-t / T),
           "sum_weigh_sigmoid": lambda t: 1.0 / (1.0 + np.exp((t / T - 0.5) / 0.2))}
PENALTY = {"first_spike": lambda t: ALPHA / (1.01 * T - np.minimum(t, T)),
           "first_spike_exp": lambda t: ALPHA * (np.exp(np.minimum(t, T) / TAU_1) - 1.0)}
PENALTY_DERIVATIVE = {
    "first_spike": lambda t: ALPHA / (1.01 * T - np.minimum(t, T)) ** 2,
    "first_spike_exp": lambda t: ALPHA / TAU_1 * np.exp(np.minimum(t, T) / TAU_1)}


def compiled(shape, *args):
    """The compiled (njit) scalar shape at every element of the broadcast arguments."""
    arrays = np.broadcast_arrays(*[np.asarray(a) for a in args])
    return np.array([shape(*(a[i].item() for a in arrays)) for i in np.ndindex(arrays[0].shape)],
                    dtype=np.float64).reshape(arrays[0].shape)


@pytest.mark.parametrize("loss_type", READOUT)
def test_readout_weight(loss_type):
    """g(t): 1, 1 - t/T, exp(-t/T), 1/(1 + exp((t/T - 1/2)/0.2)); compiled and on arrays."""
    code = shapes.LOSS_CODES[loss_type]
    expected = READOUT[loss_type](TIMES)
    np.testing.assert_allclose(compiled(shapes.readout_weight, code, TIMES, T), expected,
                               rtol=RTOL, atol=0)
    np.testing.assert_array_equal(losses.readout_weight(loss_type, TIMES, T), expected)


def test_readout_weight_values():
    """The weights at a few times by hand: g(0) = 1; g(T) = 0, exp(-1), 1/(1 + exp(2.5));
    the sigmoid is 1/2 at T/2."""
    g = {lt: compiled(shapes.readout_weight, shapes.LOSS_CODES[lt], np.array([0.0, T / 2, T]), T)
         for lt in READOUT}
    np.testing.assert_allclose(g["sum"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(g["sum_weigh_linear"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(g["sum_weigh_exp"], [1.0, np.exp(-0.5), np.exp(-1.0)])
    np.testing.assert_allclose(g["sum_weigh_sigmoid"],
                               [1 / (1 + np.exp(-2.5)), 0.5, 1 / (1 + np.exp(2.5))])


def test_readout_weight_of_the_other_losses_is_one():
    for loss_type in ("sum_weigh_input", "max", "avg_xentropy", "first_spike"):
        assert shapes.readout_weight(shapes.LOSS_CODES[loss_type], 3.0, T) == 1.0


def test_accumulator():
    """V_a <- V_a + (I_a - V_a) dt/tau_acc with I_a = gain x input spikes; the host trace is
    that recursion from V_a = I_a = 0 (a(n) at the start of step n)."""
    V_a, I_a = np.array([0.0, 0.2, 1.5]), np.array([0.0, 0.03, 0.01])
    dt, tau_acc = 0.5, 3.0
    np.testing.assert_array_equal(compiled(shapes.accumulator_update, V_a, I_a, dt, tau_acc),
                                  V_a + (I_a - V_a) * dt / tau_acc)
    assert shapes.accumulator_input(3, shapes.ACCUMULATOR_GAIN) == 0.03
    counts = np.array([[2, 0, 1, 0], [0, 0, 0, 0]])
    a = losses.accumulator_trace(counts, dt, tau_acc)
    step = dt / tau_acc
    np.testing.assert_allclose(a[0], [0.0, 0.0, 0.02 * step, 0.02 * step * (1 - step)],
                               rtol=1e-15)
    np.testing.assert_array_equal(a[1], 0.0)


def test_neg_log():
    """-log max(S, 1e-300)."""
    S = np.array([1.0, 0.5, 1e-3, 1e-299, 1e-300, 1e-310, 0.0])
    expected = -np.log(np.maximum(S, 1e-300))
    np.testing.assert_allclose(compiled(shapes.neg_log, S), expected, rtol=RTOL, atol=0)
    assert shapes.neg_log(0.0) == pytest.approx(300 * np.log(10.0), rel=1e-15)
    assert shapes.neg_log(1.0) == 0.0


def test_readout_forcing():
    """(onehot - S) / (tau_m T n_batch)."""
    onehot, S = np.array([1.0, 0.0, 0.0]), np.array([0.7, 0.2, 0.1])
    tau_m = np.array([10.0, 5.0, 20.0])
    np.testing.assert_array_equal(compiled(shapes.readout_forcing, onehot, S, tau_m, T, 32),
                                  (onehot - S) / (tau_m * T * 32))


def test_spike_time():
    """t = step dt; T + 1 for a neuron that never spiked (step -1)."""
    steps = np.array([0, 1, 7, 39, -1])
    expected = np.where(steps >= 0, steps * 0.5, T + 1.0)
    np.testing.assert_array_equal(compiled(shapes.spike_time, steps, 0.5, T), expected)
    np.testing.assert_array_equal(shapes.on_arrays(shapes.spike_time)(steps, 0.5, T), expected)


@pytest.mark.parametrize("loss_type", PENALTY)
def test_penalty(loss_type):
    """alpha / (1.01 T - t), alpha (exp(t / tau_1) - 1), at min(t, T)."""
    code = shapes.LOSS_CODES[loss_type]
    t = np.append(TIMES, [T + 1.0, 3 * T])
    expected = PENALTY[loss_type](t)
    np.testing.assert_allclose(compiled(shapes.first_spike_penalty, code, t, T, TAU_1, ALPHA),
                               expected, rtol=RTOL, atol=0)
    on_arrays = shapes.on_arrays(shapes.first_spike_penalty)
    np.testing.assert_array_equal(on_arrays(code, t, T, TAU_1, ALPHA), expected)
    assert expected[-1] == expected[-2] == PENALTY[loss_type](T)       # clamped at T


@pytest.mark.parametrize("loss_type", PENALTY_DERIVATIVE)
def test_penalty_derivative(loss_type):
    """alpha / (1.01 T - t)^2, alpha / tau_1 exp(t / tau_1); at t >= T the value at T (the
    first_spike one there computed as alpha / (0.01 T)^2: equal to rounding)."""
    code = shapes.LOSS_CODES[loss_type]
    t = np.append(TIMES, [T + 1.0, 3 * T])
    expected = PENALTY_DERIVATIVE[loss_type](t)
    args = (T, TAU_1, ALPHA)
    before_T = t < T
    d = compiled(shapes.first_spike_penalty_derivative, code, t, *args)
    np.testing.assert_allclose(d[before_T], expected[before_T], rtol=4 * RTOL, atol=0)
    np.testing.assert_allclose(d[~before_T], expected[~before_T], rtol=1e-13, atol=0)
    assert np.all(d[~before_T] == shapes.first_spike_penalty_derivative(code, T, *args))
    on_arrays = shapes.on_arrays(shapes.first_spike_penalty_derivative)
    np.testing.assert_array_equal(on_arrays(code, t[before_T], *args), expected[before_T])
    np.testing.assert_allclose(on_arrays(code, t, *args), d, rtol=4 * RTOL, atol=0)


@pytest.mark.parametrize("loss_type", PENALTY)
def test_penalty_derivative_is_the_slope_of_the_penalty(loss_type):
    """Central finite differences of the penalty inside (0, T), the left difference at T."""
    code = shapes.LOSS_CODES[loss_type]
    h = 1e-5
    for t in (0.5, 4.0, 11.0, 18.0, T - 0.01):
        fd = (shapes.first_spike_penalty(code, t + h, T, TAU_1, ALPHA)
              - shapes.first_spike_penalty(code, t - h, T, TAU_1, ALPHA)) / (2 * h)
        d = shapes.first_spike_penalty_derivative(code, t, T, TAU_1, ALPHA)
        assert d == pytest.approx(fd, rel=1e-7), t
    fd_left = (shapes.first_spike_penalty(code, T, T, TAU_1, ALPHA)
               - shapes.first_spike_penalty(code, T - h, T, TAU_1, ALPHA)) / h
    d_T = shapes.first_spike_penalty_derivative(code, T, T, TAU_1, ALPHA)
    assert d_T == pytest.approx(fd_left, rel=1e-3)


def test_first_spike_gradient():
    """((1 - S) / tau_0 + penalty') / n_batch for the label, -S / tau_0 / n_batch else."""
    is_label = np.array([True, False, False])
    S, d_penalty = np.array([0.6, 0.3, 0.1]), np.array([0.25, 7.0, 9.0])
    expected = np.where(is_label, (1.0 - S) / TAU_0 + d_penalty, -S / TAU_0) / 16
    np.testing.assert_array_equal(
        compiled(shapes.first_spike_gradient, is_label, S, d_penalty, TAU_0, 16), expected)


def test_scalar_helpers():
    """minimum, maximum, where: compiled scalar versions of numpy's."""
    assert shapes.minimum(2.0, 3.0) == 2.0 and shapes.minimum(3.0, 2.0) == 2.0
    assert shapes.maximum(2.0, 3.0) == 3.0 and shapes.maximum(3.0, 2.0) == 3.0
    assert shapes.where(True, 1.0, 2.0) == 1.0 and shapes.where(False, 1.0, 2.0) == 2.0


def test_on_arrays_keeps_numpy_scalars():
    """Scalars in give numpy scalars out (numpy's scalar arithmetic, e.g. pow for ** 2, as the
    host's scalar expressions); arrays in give arrays."""
    code = shapes.FIRST_SPIKE
    d = shapes.on_arrays(shapes.first_spike_penalty_derivative)(code, T, T, TAU_1, ALPHA)
    assert isinstance(d, np.float64) and d == ALPHA / (0.01 * T) ** 2
    assert shapes.on_arrays(shapes.spike_time)(np.array([3, -1]), 0.5, T).shape == (2,)


# ----------------------------------------------------------------------------------------------
# loss types and codes, written once
# ----------------------------------------------------------------------------------------------

def test_loss_types_and_codes():
    assert shapes.LOSS_TYPES == shapes.LI_LOSSES + shapes.FIRST_SPIKE_LOSSES
    assert len(set(shapes.LOSS_TYPES)) == 9
    assert list(shapes.LOSS_CODES) == list(shapes.LOSS_TYPES)
    assert list(shapes.LOSS_CODES.values()) == list(range(9))
    assert all(shapes.LOSS_CODES[lt] <= shapes.SUM_WEIGH_INPUT for lt in shapes.INTEGRAL_LOSSES)
    assert all(shapes.LOSS_CODES[lt] > shapes.SUM_WEIGH_INPUT
               for lt in shapes.LOSS_TYPES if lt not in shapes.INTEGRAL_LOSSES)
    for name in ("LOSS_TYPES", "LI_LOSSES", "FIRST_SPIKE_LOSSES"):
        assert getattr(losses, name) is getattr(shapes, name)
    assert losses_cuda.LOSS_CODES is shapes.LOSS_CODES


# ----------------------------------------------------------------------------------------------
# one source: the host losses and the CUDA kernel take the shapes from the shapes module
# ----------------------------------------------------------------------------------------------

SHAPES = ("readout_weight", "accumulator_update", "accumulator_input", "neg_log",
          "readout_forcing", "spike_time", "first_spike_penalty", "first_spike_penalty_derivative",
          "first_spike_gradient")


@pytest.mark.parametrize("name", SHAPES)
def test_cuda_kernel_calls_the_shapes(name):
    """The CUDA module's shape functions are the shapes module's objects, and the kernel calls
    them."""
    assert getattr(losses_cuda, name) is getattr(shapes, name)
    assert name in _called_names(losses_cuda._output_terms_kernel.py_func)


@pytest.mark.parametrize("name", SHAPES)
def test_host_losses_evaluate_the_shapes(name):
    """The host's array functions run the shapes' own code objects."""
    host = getattr(losses, "_" + name)
    assert host.__code__ is getattr(shapes, name).py_func.__code__


def test_no_second_copy_of_the_formulas():
    """Neither the host losses nor the CUDA loss module define a compiled function of their own;
    the host's loss functions and the kernel take no logarithm (``neg_log`` does) and hold no
    number other than 0, 1 and 2 (the shapes' constants: 1.01, 0.01, 0.5, 0.2, 1e-300, the
    accumulator gain, are in ``shapes`` only)."""
    from numba.core.registry import CPUDispatcher
    for module in (losses, losses_cuda):
        own = [name for name, obj in vars(module).items()
               if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__]
        assert not own, (module.__name__, own)
    for function in (losses.readout_weight, losses.accumulator_trace, losses.output_terms,
                     losses_cuda._output_terms_kernel.py_func):
        tree = ast.parse(inspect.getsource(function))
        numbers = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and type(node.value) in (int, float)}
        assert numbers <= {0, 1, 2}, (function.__name__, numbers)
        attributes = {f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
        assert not attributes & {"math.log", "np.log", "math.pow", "np.power"}, function.__name__


def _called_names(function):
    tree = ast.parse(inspect.getsource(function))
    return {node.func.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
