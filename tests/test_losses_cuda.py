"""The loss terms on the GPU (``eventprop.backends.cuda.loss.output_terms_device``) against the host
(``losses.output_terms``): for every loss type, float32 and float64, with and without the backward
terms, the same arrays (shapes, dtypes, values: relative 1e-5 in float32, 1e-12 in float64,
integers exactly) and the same predictions, losses and correctness. Both evaluate the shapes of
``losses.shapes`` (tested on their own in tests/test_loss_shapes.py): the kernel compiled, the host
on numpy arrays.

How this file runs (as tests/test_engine_cuda.py):

* The equality tests need ``numba.cuda``: a GPU, or numba's CUDA simulator, which is switched on
  by ``NUMBA_ENABLE_CUDASIM=1`` in the environment *before* numba is imported. They skip in a
  process that has neither.
* ``test_cuda_simulator_subprocess`` runs this same file again in a fresh Python process with
  ``NUMBA_ENABLE_CUDASIM=1`` set, and fails with that run's output if any of its tests fail; so a
  plain ``pytest`` (CI, no GPU) runs the equality tests under the simulator. Directly:
  ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_losses_cuda.py``.
* ``test_kernel_compiles_for_the_gpu`` compiles the kernel to PTX for float32 and float64 when
  NVVM (a CUDA toolkit) is installed; that needs no GPU.

The device buffers of the tests are filled with garbage (NaN, 77) when they are allocated, so an
element that the kernel does not write shows up as a difference.
"""
import numpy as np
import pytest
from numba import cuda

from eventprop import losses
from eventprop.backends.cuda import loss as losses_cuda
from eventprop.losses import shapes
from cuda_simulator import SIMULATOR, needs_cuda, run_under_simulator, runs_only_without_cuda

DT, N_STEPS = 0.5, 12
T = DT * N_STEPS
N_BATCH = 5                                   # nominal batch size (the 1/B of the gradients)
TAU_0, TAU_1, ALPHA, TAU_ACC = 0.7, 4.0, 0.02, 3.0
TAU_M_OUT = (10.0, 15.0, 20.0, 12.5)
TERM_NAMES = ("A_out", "force_g", "force_c", "jump_step", "jump_amount", "fs_term")


class Buffers:
    """``Workspace.buffer`` for the tests: one device array per (name, shape, dtype), made by
    ``cuda.device_array`` on first request and filled with garbage."""

    def __init__(self):
        self.arrays = {}
        self.allocations = 0

    def __call__(self, name, shape, dtype):
        key = (name, tuple(int(n) for n in shape), np.dtype(dtype).str)
        if key not in self.arrays:
            d = cuda.device_array(key[1], dtype)
            if d.size:
                garbage = np.nan if np.dtype(dtype).kind == "f" else 77
                d.copy_to_device(np.full(key[1], garbage, dtype))
            self.arrays[key] = d
            self.allocations += 1
        return self.arrays[key]


def make_batch(dtype, rows=(0, 1, 2), seed=0):
    """(V_out_tr, first_step, labels, tau_m_out, in_ptr) of the samples ``rows`` of a batch of
    three, C = 4: sample 0 has silent outputs but its label neuron spikes (not first), in sample 1
    the label neuron never spikes (and two outputs spike first at the same step), in sample 2 no
    output spikes. Voltages are random normals (unique maxima)."""
    rng = np.random.default_rng(seed)
    V_out_tr = rng.normal(0.0, 1.0, (3, N_STEPS + 1, 4)).astype(dtype)
    first_step = np.array([[-1, 5, 3, -1],
                           [4, -1, 7, 4],
                           [-1, -1, -1, -1]], dtype=np.int64)
    labels = np.array([2, 1, 3], dtype=np.int64)
    counts = rng.integers(0, 4, (3, N_STEPS))
    in_ptr = np.zeros((3, N_STEPS + 1), dtype=np.int64)
    in_ptr[:, 1:] = np.cumsum(counts, axis=1)
    in_ptr += np.array([[0], [100], [250]])   # pointers into the batch's channel list
    rows = list(rows)
    return (V_out_tr[rows], first_step[rows], labels[rows], np.array(TAU_M_OUT, dtype),
            in_ptr[rows])


def host_terms(loss_type, V_out_tr, first_step, labels, tau_m_out, in_ptr, need_backward):
    """``losses.output_terms`` as ``network.EventPropNetwork`` calls it."""
    accumulator = None
    if loss_type == "sum_weigh_input":
        accumulator = losses.accumulator_trace(np.diff(in_ptr, axis=1), DT, TAU_ACC)
    return losses.output_terms(loss_type, V_out_tr, first_step, labels, DT, T,
                               tau_m_out.astype(np.float64), N_BATCH, tau_0=TAU_0, tau_1=TAU_1,
                               alpha=ALPHA, accumulator=accumulator, dtype=V_out_tr.dtype,
                               need_backward=need_backward)


def device_terms(buffers, loss_type, V_out_tr, first_step, labels, tau_m_out, in_ptr,
                 need_backward):
    """``output_terms_device`` on copies of the arrays; -> (host copies of the backward terms'
    arrays by name, predictions, loss, correct)."""
    terms, summary = losses_cuda.output_terms_device(
        buffers, loss_type, cuda.to_device(V_out_tr), cuda.to_device(first_step),
        cuda.to_device(labels), DT, T, cuda.to_device(tau_m_out), N_BATCH, tau_0=TAU_0,
        tau_1=TAU_1, alpha=ALPHA, in_ptr=cuda.to_device(in_ptr), tau_accumulator=TAU_ACC,
        need_backward=need_backward)
    predictions, loss, correct = losses_cuda.finish(summary.copy_to_host(), labels)
    arrays = {name: getattr(terms, name).copy_to_host() for name in TERM_NAMES}
    return arrays, predictions, loss, correct


def assert_same(host, device, dtype):
    arrays, predictions, loss, correct = device
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    for name in TERM_NAMES:
        h, d = getattr(host, name), arrays[name]
        assert d.shape == h.shape and d.dtype == h.dtype, (name, d.shape, d.dtype, h.shape,
                                                           h.dtype)
        if h.dtype.kind == "i":
            np.testing.assert_array_equal(d, h, err_msg=name)
        else:
            np.testing.assert_allclose(d, h, rtol=rtol, atol=0, err_msg=name)
    assert predictions.dtype == np.int64 and loss.dtype == np.float64
    np.testing.assert_array_equal(predictions, host.predictions)
    np.testing.assert_allclose(loss, host.loss, rtol=1e-12, atol=0)   # float64 in both
    np.testing.assert_array_equal(correct, host.correct)


def run_both(loss_type, dtype, need_backward, buffers=None, **batch):
    data = make_batch(dtype, **batch)
    host = host_terms(loss_type, *data, need_backward)
    device = device_terms(buffers or Buffers(), loss_type, *data, need_backward)
    assert_same(host, device, dtype)
    return host


@needs_cuda
@pytest.mark.parametrize("need_backward", (True, False))
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_output_terms_equal_host(loss_type, dtype, need_backward):
    """Every array, prediction, loss and correctness as ``losses.output_terms`` gives them."""
    run_both(loss_type, dtype, need_backward)


@needs_cuda
@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_batch_of_one(loss_type):
    """B = 1 (the sample whose label neuron is silent)."""
    run_both(loss_type, np.float32, True, rows=(1,))


@needs_cuda
@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_ties_take_the_first_index(loss_type):
    """Integer voltages (equal maxima over steps: the first step, as numpy's argmax); outputs 0
    and 2 of sample 0 with equal traces above the others' (equal largest class values:
    prediction 0); outputs 0 and 3 of sample 1 spiking first at the same step (prediction 0)."""
    V_out_tr, first_step, labels, tau_m_out, in_ptr = make_batch(np.float64)
    V_out_tr = np.random.default_rng(1).integers(-2, 3, V_out_tr.shape).astype(np.float64)
    V_out_tr[0, :, 2] = V_out_tr[0, :, 0]
    V_out_tr[0, :, 1] = V_out_tr[0, :, 0] - 1.0
    V_out_tr[0, :, 3] = V_out_tr[0, :, 0] - 2.0
    assert (V_out_tr[:, :N_STEPS] == V_out_tr[:, :N_STEPS].max(axis=1, keepdims=True)).sum() > 12
    host = host_terms(loss_type, V_out_tr, first_step, labels, tau_m_out, in_ptr, True)
    if loss_type not in losses.FIRST_SPIKE_LOSSES:
        assert host.predictions[0] == 0
    else:
        assert host.predictions[1] == 0
    device = device_terms(Buffers(), loss_type, V_out_tr, first_step, labels, tau_m_out, in_ptr,
                          True)
    assert_same(host, device, np.float64)


@needs_cuda
def test_accumulator_is_the_host_recursion():
    """sum_weigh_input: the float64 accumulator (scratch "loss/accumulator") is
    ``losses.accumulator_trace`` of the input counts in_ptr[b, n + 1] - in_ptr[b, n] (bit for bit
    under the simulator)."""
    buffers = Buffers()
    V_out_tr, first_step, labels, tau_m_out, in_ptr = make_batch(np.float32)
    device_terms(buffers, "sum_weigh_input", V_out_tr, first_step, labels, tau_m_out, in_ptr,
                 True)
    acc = buffers.arrays[("loss/accumulator", (3, N_STEPS), "<f8")].copy_to_host()
    expected = losses.accumulator_trace(np.diff(in_ptr, axis=1), DT, TAU_ACC)
    assert np.abs(expected).max() > 0
    if SIMULATOR:     # the same float64 operations in the same order: equal bit for bit
        np.testing.assert_array_equal(acc, expected)
    else:
        np.testing.assert_allclose(acc, expected, rtol=1e-14, atol=0)


@needs_cuda
def test_buffers_are_reused():
    """All arrays come from ``buffer`` under "loss/" names; a second pass over every loss type
    (on buffers holding the first pass's values) allocates nothing and gives the host's
    results again."""
    buffers = Buffers()
    for sweep in range(2):
        for loss_type in losses.LOSS_TYPES:
            run_both(loss_type, np.float32, sweep == 0, buffers=buffers)
            run_both(loss_type, np.float32, sweep == 1, buffers=buffers)
        if sweep == 0:
            allocations = buffers.allocations
    assert buffers.allocations == allocations
    assert all(name.startswith("loss/") for name, _, _ in buffers.arrays)


@needs_cuda
@pytest.mark.parametrize("loss_type", losses.LOSS_TYPES)
def test_empty_batch(loss_type):
    """B = 0: no kernel runs; the outputs have the host's (empty) shapes."""
    host = run_both(loss_type, np.float32, True, rows=())
    assert host.predictions.shape == (0,)


def test_loss_codes_and_unknown_loss():
    """The kernel's flags are those of ``losses.shapes`` and cover ``losses.LOSS_TYPES``; an
    unknown loss type is an error naming LOSS_TYPE (before anything is allocated)."""
    assert losses_cuda.LOSS_CODES is shapes.LOSS_CODES
    assert tuple(losses_cuda.LOSS_CODES) == losses.LOSS_TYPES
    assert sorted(losses_cuda.LOSS_CODES.values()) == list(range(len(losses.LOSS_TYPES)))

    def no_buffer(name, shape, dtype):
        raise AssertionError("allocated")

    V_out_tr, first_step, labels, tau_m_out, in_ptr = make_batch(np.float32)
    with pytest.raises(ValueError, match="LOSS_TYPE 'mse'"):
        losses_cuda.output_terms_device(no_buffer, "mse", V_out_tr, first_step, labels, DT, T,
                                        tau_m_out, N_BATCH)


def test_finish():
    """finish: predictions (int64, -1 kept), losses and correctness from the summary."""
    summary = np.array([[2.0, 0.5], [-1.0, 1.25], [0.0, 3.0]])
    predictions, loss, correct = losses_cuda.finish(summary, np.array([2, 1, 1]))
    np.testing.assert_array_equal(predictions, [2, -1, 0])
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(loss, [0.5, 1.25, 3.0])
    np.testing.assert_array_equal(correct, [True, False, False])


@pytest.mark.skipif(SIMULATOR, reason="the simulator does not compile kernels")
def test_kernel_compiles_for_the_gpu():
    """The kernel compiles to PTX for float32 and float64 runs. Needs NVVM, not a GPU."""
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        pytest.skip("NVVM (CUDA toolkit) not found: cannot compile kernels here")
    for dtype in (np.float32, np.float64):
        ptx = losses_cuda.compile_ptx(dtype)
        assert ".entry" in ptx


@runs_only_without_cuda
def test_cuda_simulator_subprocess():
    """Runs this file under NUMBA_ENABLE_CUDASIM=1 in a fresh process (see the module doc)."""
    run_under_simulator(__file__)
