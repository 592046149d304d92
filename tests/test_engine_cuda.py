"""The CUDA backend (``backends.cuda``) against the CPU backend (``backends.cpu``): on the same
inputs and seeds, the same spikes (counts, stored spikes, first spikes, overflow counters) and the
same traces and gradients to rounding (relative 1e-4 in float32, 1e-10 in float64), for every loss,
every hidden neuron type, recurrent and two-layer networks, dropout and noise, trained taus.

How this file runs:

* The equality tests need ``numba.cuda``: a GPU, or numba's CUDA simulator, which is switched on
  by ``NUMBA_ENABLE_CUDASIM=1`` in the environment *before* numba is imported (a process-wide
  switch: it would replace the CUDA target of every other test in the same process). They skip
  in a process that has neither.
* ``test_cuda_simulator_subprocess`` therefore runs this same file again in a fresh Python
  process with ``NUMBA_ENABLE_CUDASIM=1`` set, and fails with that run's output if any of its
  tests fail. So a plain ``pytest`` (CI, no GPU) runs the equality tests under the simulator
  while the main process's numba stays untouched. Under the simulator (or on a GPU) the same
  tests also run directly: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_engine_cuda.py``.
* ``test_kernels_compile_for_the_gpu`` compiles both kernels to PTX for float32 and float64 when
  NVVM (a CUDA toolkit) is installed; that needs no GPU and checks what the simulator cannot:
  that the kernels, and the ``models`` functions they call, type and compile for the device.

Each equality test runs ``EventPropNetwork.run_batch`` on a CPU backend whose kernels are
"twins": every forward and backward call runs the CPU kernel on the network's records and the
CUDA kernels (``cuda.host``) on copies of them, and the test compares all the outputs of every
call.

The ``test_device_*`` tests run networks on the CUDA backend itself, that is through its
``Workspace`` (buffers and parameters kept on the device from trial to trial), against networks on
the CPU over sequences of trials, and check what is uploaded, copied back and allocated.
``test_select_gpu_*`` check the device choice with a stand-in for ``numba.cuda`` (no GPU needed),
and ``test_bench_cuda_quick`` runs ``bench/bench_cuda.py --quick``.
Delays and sparse connectivity are tested the same way in ``test_cuda_projections.py``.
"""
import os
import sys

import numba
import numpy as np
import pytest
from numba import cuda

from cuda_simulator import SIMULATOR, needs_cuda, run_under_simulator, runs_only_without_cuda
from eventprop import projections
from eventprop.backends import CpuBackend, base, select_backend
from eventprop.backends.cpu.backend import SHORT, host_parameters
from eventprop.backends.cpu import kernels as cpu_kernels
from eventprop.backends.cuda import CudaBackend
from eventprop.backends.cuda import backend as cuda_backend
from eventprop.backends.cuda import host as cuda_host
from eventprop.backends.cuda import launch, optimiser, workspace
from eventprop.backends.records import Gradients
from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.optim import AdamStep

N_IN, N_HID, N_OUT, BATCH = 10, 6, 3, 3

# positions of the records in the arguments of forward_batch / backward_batch
STORE, TRACES, GRADS = 5, 6, 8
EXACT = ("sp_ptr", "sp_idx", "sp_need", "n_unstored", "counts", "first_step")


def copy_record(record):
    return type(record)(*(x.copy() if isinstance(x, np.ndarray) else x for x in record))


class TwinKernels:
    """The kernels of a CPU backend for the tests: runs the CPU kernels and the CUDA kernels
    (``cuda.host``) on the same records. The CPU kernels take sparse projections by row of
    existing synapses (``cpu.backend.sparse_weights``): the CUDA kernels get the network's
    dense records instead (``net``), and their gradients are compared in the CPU's layout."""

    def __init__(self, net=None):
        self.net = net
        self.calls = []

    def _run(self, name, args):
        copies = [copy_record(a) for a in args]
        sparse = self.net is not None and self.net.connectivity
        if sparse:
            copies[0], copies[1] = host_parameters(self.net), self.net.synapses()
            if name == "backward_batch":
                dense = base.gradient_shapes(self.net, copies[0])
                copies[GRADS] = Gradients(*(np.zeros((g.shape[0],) + shape, dtype=g.dtype)
                                            for g, shape in zip(args[GRADS], dense)))
        getattr(cuda_host, name)(*copies)
        getattr(cpu_kernels, name)(*args)
        if sparse and name == "backward_batch":
            copies[GRADS] = copies[GRADS]._replace(**{
                key: projections.compact(getattr(copies[GRADS], key), conn)
                for proj, conn in self.net.connectivity.items()
                for key in ("dW_" + SHORT[proj], "dd_" + SHORT[proj])
                if getattr(copies[GRADS], key).size})
        self.calls.append((name, args, copies))

    def forward_batch(self, *args):
        self._run("forward_batch", args)

    def backward_batch(self, *args):
        self._run("backward_batch", args)


def make_data(n_steps, seed=1, n_spikes=25):
    rng = np.random.default_rng(seed)
    steps = [rng.integers(0, n_steps, n_spikes) for _ in range(BATCH)]
    chans = [rng.integers(0, N_IN, n_spikes) for _ in range(BATCH)]
    labels = np.arange(BATCH) % N_OUT
    return SpikeData.from_lists(steps, chans, labels, n_steps, N_IN)


def make_net(loss_type, dtype, **kw):
    init = {"input_hidden": (0.6, 0.3), "hidden_output": (0.6, 0.3),
            "hidden_hidden": (0.0, 0.2), "hidden_hiddenfwd": (0.6, 0.3)}
    init.update(kw.pop("init", {}))
    args = dict(dt=1.0, trial_ms=30.0, loss_type=loss_type, init=init, seed=3, n_batch=4,
                dtype=dtype, tau_0=2.0, tau_1=20.0, alpha=1e-3)
    args.update(kw)
    return EventPropNetwork(N_IN, N_HID, N_OUT, **args)


def assert_close(name, cpu, gpu, rtol):
    assert cpu.shape == gpu.shape and cpu.dtype == gpu.dtype, name
    if name in EXACT:
        np.testing.assert_array_equal(gpu, cpu, err_msg=name)
    elif cpu.size:
        scale = float(np.abs(cpu).max())
        np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=rtol * scale, err_msg=name)


def compare(twin, rtol):
    kinds = [name for name, _, _ in twin.calls]
    assert "forward_batch" in kinds and "backward_batch" in kinds
    for kind, cpu_args, gpu_args in twin.calls:
        if kind == "forward_batch":
            for k in (STORE, TRACES):
                for name, cpu, gpu in zip(cpu_args[k]._fields, cpu_args[k], gpu_args[k]):
                    assert_close(name, cpu, gpu, rtol)
        else:   # the CPU fills K chunks, the GPU chunk 0: compare the sums
            for name, cpu, gpu in zip(Gradients._fields, cpu_args[GRADS], gpu_args[GRADS]):
                assert_close(name, cpu.sum(axis=0), gpu.sum(axis=0), rtol)


def run_twin(loss_type, dtype=np.float32, p_drop=0.0, noise=0.0, capacity=None, **kw):
    net = make_net(loss_type, dtype, **kw)
    if capacity is not None:
        net.spike_capacity = capacity
    data = make_data(net.n_steps)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    twin = TwinKernels()
    net.backend = CpuBackend(kernels=twin)
    result = net.run_batch(in_ptr, in_ch, data.labels, learn=True, p_drop_hidden=p_drop,
                           noise=noise, seed=7, keep_spikes=True, keep_hidden_traces=True)
    return twin, result


RTOL = {np.float32: 1e-4, np.float64: 1e-10}

# (loss, dtype, network options, run options): every loss; LIF, hetLIF, ALIF; recurrent and two
# layers; dropout + noise; trained hidden and output taus; hetLI outputs; regularisation
CASES = {
    "sum-LIF": ("sum", np.float32, {}, {}),
    "linear-hetLIF-rec": ("sum_weigh_linear", np.float32,
                          {"hidden_type": "hetLIF", "recurrent": True}, {}),
    "exp-ALIF-2layers-drop-noise": ("sum_weigh_exp", np.float32,
                                    {"hidden_type": "ALIF", "n_layers": 2},
                                    {"p_drop": 0.2, "noise": 0.3}),
    "sigmoid-LIF-2layers-rec-tau": ("sum_weigh_sigmoid", np.float32,
                                    {"n_layers": 2, "recurrent": True, "train_tau": True,
                                     "train_tau_output": True}, {}),
    "input-hetLIF-hetLI-reg": ("sum_weigh_input", np.float32,
                               {"hidden_type": "hetLIF", "output_type": "hetLI",
                                "reg_type": "simple", "lbd_upper": 1e-3, "lbd_lower": 1e-3,
                                "nu_upper": 2.0}, {}),
    "max-ALIF-rec-tau": ("max", np.float32,
                         {"hidden_type": "ALIF", "recurrent": True, "train_tau": True}, {}),
    "xent-LIF-rec-drop-noise-tau": ("avg_xentropy", np.float32,
                                    {"recurrent": True, "train_tau": True,
                                     "train_tau_output": True},
                                    {"p_drop": 0.3, "noise": 0.5}),
    "first_spike-LIF": ("first_spike", np.float32,
                        {"init": {"hidden_output": (1.2, 0.3)}}, {}),
    "first_spike_exp-ALIF-2layers-rec-drop-noise-tau": (
        "first_spike_exp", np.float32,
        {"hidden_type": "ALIF", "n_layers": 2, "recurrent": True, "train_tau": True,
         "init": {"hidden_output": (1.2, 0.3)}}, {"p_drop": 0.2, "noise": 0.3}),
    "f64-exp-ALIF-2layers-rec-drop-noise-tau-Thomas1": (
        "sum_weigh_exp", np.float64,
        {"hidden_type": "ALIF", "n_layers": 2, "recurrent": True, "train_tau": True,
         "train_tau_output": True, "reg_type": "Thomas1", "lbd_upper": 1e-3, "lbd_lower": 1e-3,
         "nu_upper": 2.0, "rho_upper": 4.0, "glb_upper": 1e-3}, {"p_drop": 0.2, "noise": 0.3}),
    "f64-first_spike-hetLIF-rec": ("first_spike", np.float64,
                                   {"hidden_type": "hetLIF", "recurrent": True,
                                    "init": {"hidden_output": (1.2, 0.3)}}, {}),
    "f64-max-LIF": ("max", np.float64, {}, {}),
}


@needs_cuda
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_equals_cpu(case):
    loss_type, dtype, net_kw, run_kw = CASES[case]
    twin, result = run_twin(loss_type, dtype, **run_kw, **net_kw)
    assert result.hidden_counts.sum() > 10                 # the comparison is not vacuous
    if loss_type.startswith("first_spike"):
        assert result.output_counts.sum() > 0
    if net_kw.get("hidden_type") == "ALIF":
        sp_b = twin.calls[0][2][STORE].sp_b
        assert np.abs(sp_b).max() > 0
    compare(twin, RTOL[dtype])


@needs_cuda
def test_cuda_spike_overflow_and_store_growth_equal_cpu():
    """N_MAX_SPIKE overflow (n_unstored) and a spike store too small for the first forward pass
    (sp_need > capacity, positions beyond it not written, the network re-runs): equal on both."""
    twin, result = run_twin("sum", np.float32, recurrent=True, n_max_spike=1, capacity=4)
    assert result.n_unstored.sum() > 0
    forward_calls = [c for c in twin.calls if c[0] == "forward_batch"]
    assert len(forward_calls) == 2                         # the store grew once
    assert forward_calls[0][1][STORE].sp_need.max() > 4
    compare(twin, RTOL[np.float32])


@needs_cuda
@pytest.mark.parametrize("threads", [1, 3, 16, 40])
def test_cuda_block_size_does_not_change_results(threads, monkeypatch):
    """One thread for all units; 3 threads (backward: groups of 2 lanes per spike and a thread in
    no group); more threads than units (threads that own no unit; 40: one group of 32 lanes and 8
    threads in no group)."""
    monkeypatch.setattr(launch, "THREADS_PER_BLOCK", threads)
    twin, _ = run_twin("avg_xentropy", np.float32, hidden_type="ALIF", recurrent=True,
                       p_drop=0.2, noise=0.3)
    compare(twin, RTOL[np.float32])


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_global_memory_lists_equal_cpu(dtype, monkeypatch):
    """Networks too large for shared memory keep the forward pass's spike lists and the backward
    pass's postsynaptic adjoints in global memory: same results (forced here with no shared
    memory allowed), two recurrent ALIF layers."""
    monkeypatch.setattr(launch, "SHARED_BYTES", 0)
    twin, result = run_twin("sum_weigh_exp", dtype, hidden_type="ALIF", recurrent=True,
                            n_layers=2)
    assert result.hidden_counts.sum() > 10
    compare(twin, RTOL[dtype])


@needs_cuda
def test_cuda_many_spikes_in_one_step_equal_cpu():
    """Most hidden neurons fire in the same steps (strong input weights): the spikes of a step are
    put in unit order, for the spike store and for the synaptic currents, as on the CPU."""
    twin, result = run_twin("sum", np.float32, recurrent=True,
                            init={"input_hidden": (3.0, 0.1)})
    forward = [c for c in twin.calls if c[0] == "forward_batch"][-1][1]
    sp_ptr = forward[STORE].sp_ptr
    assert np.diff(sp_ptr, axis=1).max() >= N_HID           # a step where every neuron fired
    compare(twin, RTOL[np.float32])


@needs_cuda
def test_network_on_cuda_kernels_equals_cpu():
    """The whole run_batch of the CPU backend with the CUDA kernels (``cuda.host``) in place of
    the CPU kernels (K gradient chunks, the spike store growing): predictions, losses and
    gradients as on the CPU."""
    data = make_data(30, seed=4, n_spikes=40)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    results = []
    for kernels in (cpu_kernels, cuda_host):
        net = make_net("sum_weigh_exp", np.float32, recurrent=True, train_tau=True)
        net.spike_capacity = 2
        net.backend = CpuBackend(kernels=kernels)
        results.append(net.run_batch(in_ptr, in_ch, data.labels, learn=True,
                                     p_drop_hidden=0.1, noise=0.2, seed=3))
    cpu, gpu = results
    np.testing.assert_array_equal(gpu.hidden_counts, cpu.hidden_counts)
    np.testing.assert_array_equal(gpu.predictions, cpu.predictions)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-5)
    for name, g in cpu.grads.items():
        assert_close(name, g, gpu.grads[name], 1e-4)


def cuda_net(loss_type, dtype=np.float32, **kw):
    """A network on the CUDA backend (the device-resident path of run_batch)."""
    net = make_net(loss_type, dtype, backend="cuda", **kw)
    assert isinstance(net.backend, CudaBackend)
    return net


def assert_trials_equal(cpu, gpu, rtol=1e-4, spikes=True):
    np.testing.assert_array_equal(gpu.hidden_counts, cpu.hidden_counts)
    np.testing.assert_array_equal(gpu.output_counts, cpu.output_counts)
    np.testing.assert_array_equal(gpu.first_step, cpu.first_step)
    np.testing.assert_array_equal(gpu.n_unstored, cpu.n_unstored)
    np.testing.assert_array_equal(gpu.predictions, cpu.predictions)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=rtol, atol=1e-7)
    assert_close("V_out", cpu.V_out, gpu.V_out, rtol)
    if spikes:
        for name, c, g in zip(("sp_ptr", "sp_idx", "sp_imv"), cpu.spikes, gpu.spikes):
            assert_close(name, c, g, rtol)     # the whole store: zero beyond the stored spikes
    if cpu.grads is not None:
        assert set(gpu.grads) == set(cpu.grads)
        for name, g in cpu.grads.items():
            assert_close(name, g, gpu.grads[name], rtol)


@needs_cuda
def test_device_resident_trials_equal_cpu():
    """A sequence of trials on one network, as an epoch runs them: learning trials with the
    weights changed in place between them (no params_changed call), a smaller last batch, the
    spike store growing, spikes beyond N_MAX_SPIKE, evaluation trials, recordings. Every trial
    equals the CPU backend's; buffers are allocated in the first trials only."""
    kw = dict(hidden_type="ALIF", recurrent=True, train_tau=True, train_tau_output=True,
              n_max_spike=2)
    cpu = make_net("avg_xentropy", np.float32, **kw)
    gpu = cuda_net("avg_xentropy", np.float32, **kw)
    data = make_data(30, seed=5, n_spikes=40)
    rng = np.random.default_rng(0)
    plan = [  # (samples, learn, keep_spikes, keep_hidden_traces, p_drop, noise, capacity)
        ([0, 1, 2], True, True, True, 0.1, 0.2, None),
        ([2, 0, 1], True, False, False, 0.2, 0.3, None),
        ([1, 2], True, True, False, 0.0, 0.0, None),          # smaller last batch
        ([0, 1, 2], True, True, False, 0.1, 0.0, 3),          # store too small: grows
        ([0, 1, 2], False, True, True, 0.0, 0.0, None),       # evaluation
        ([2, 1], False, False, False, 0.0, 0.0, None),
        ([0, 2], False, True, False, 0.0, 0.0, None)]
    allocations, unstored = [], []
    for k, (idx, learn, keep_spikes, keep_hidden, p_drop, noise, cap) in enumerate(plan):
        if cap is not None:
            cpu.spike_capacity = gpu.spike_capacity = cap
        in_ptr, in_ch = data.batch(np.array(idx))
        labels = data.labels[idx]
        run = dict(learn=learn, p_drop_hidden=p_drop, noise=noise, seed=11 + k,
                   keep_spikes=keep_spikes, keep_hidden_traces=keep_hidden)
        rc = cpu.run_batch(in_ptr, in_ch, labels, **run)
        rg = gpu.run_batch(in_ptr, in_ch, labels, **run)
        assert rc.hidden_counts.sum() > 10
        unstored.append(int(rc.n_unstored.sum()))
        assert_trials_equal(rc, rg, spikes=keep_spikes)
        if not keep_spikes:
            assert rg.spikes is None
        assert_close("I_out", rc.I_out, rg.I_out, 1e-4)
        if keep_hidden:
            assert_close("V_hidden", rc.V_hidden, rg.V_hidden, 1e-4)
            assert_close("I_hidden", rc.I_hidden, rg.I_hidden, 1e-4)
        else:                                  # the tau training's traces stayed on the device
            assert rg.V_hidden.size == 0 and rg.I_hidden.size == 0
        if learn:                              # the same in-place step on both networks
            for name, g in rc.grads.items():
                step = (1e-2 * np.sign(g) * (rng.random(g.shape) < 0.5)).astype(g.dtype)
                cpu.params[name] -= step
                gpu.params[name] -= step
            cpu.clip_taus()
            gpu.clip_taus()
        allocations.append(gpu.backend.workspace.stats["allocations"])
    assert sum(u > 0 for u in unstored) >= 4               # spikes beyond N_MAX_SPIKE
    # the second trial allocates nothing, the smaller batch only its per-sample counters (the
    # other buffers: views), the first evaluation trial only the empty loss terms of a trial
    # without backward pass, the next ones nothing but the empty hidden traces (the first trial
    # without them)
    assert allocations[0] == allocations[1] == allocations[2] - 1
    assert allocations[3] == allocations[4] - 1
    assert allocations[5] == allocations[6]


@needs_cuda
def test_device_parameters_uploaded_only_when_changed():
    """track_param_changes: weights are uploaded again only after params_changed() (or
    set_params, or a new array); without it (default) before every trial."""
    data = make_data(30, seed=2, n_spikes=30)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    gpu = cuda_net("sum_weigh_exp", np.float32, recurrent=True)
    cpu = make_net("sum_weigh_exp", np.float32, recurrent=True)
    weights = ("w_input_hidden", "w_hidden_hidden", "w_hidden_output", "w_hidden_hidden_fwd")
    run = lambda net: net.run_batch(in_ptr, in_ch, data.labels, learn=False,   # noqa: E731
                                    keep_spikes=True)
    run(gpu)
    ws = gpu.backend.workspace
    before = ws.stats["param_uploads"]
    run(gpu)
    assert ws.stats["param_uploads"] - before == len(weights)   # default: every trial

    gpu.track_param_changes = True
    run(gpu)
    before = dict(ws.stats)
    r0 = run(gpu)
    assert ws.stats["param_uploads"] == before["param_uploads"]  # nothing changed: no upload
    assert (ws.stats["h2d_bytes"] - before["h2d_bytes"]
            == in_ptr.nbytes + in_ch.nbytes + data.labels.nbytes)

    for net in (gpu, cpu):
        net.params["w_input_hidden"] *= np.float32(1.5)          # in place
    stale = run(gpu)                       # not announced: the device keeps the old weights
    np.testing.assert_array_equal(stale.hidden_counts, r0.hidden_counts)
    gpu.params_changed()
    assert_trials_equal(run(cpu), run(gpu))

    for net in (gpu, cpu):
        net.set_params({"w_hidden_output": net.params["w_hidden_output"] * 2})
    assert_trials_equal(run(cpu), run(gpu))
    for net in (gpu, cpu):                 # a new array object
        net.params["w_hidden_hidden"] = net.params["w_hidden_hidden"] * np.float32(0.5)
    assert_trials_equal(run(cpu), run(gpu))
    for net in (gpu, cpu):                 # time constants: compared by value, always seen
        net.params["tau_m_hidden"] += np.float32(3.0)
    assert_trials_equal(run(cpu), run(gpu))


@needs_cuda
def test_device_copies_back_only_what_is_needed():
    """Evaluation without recordings copies back the two per-sample counters, the first
    spikes, the spike counts and each sample's loss and prediction (not V_out: the loss runs on
    the device); learning adds the gradients (all of them, in one copy) unless fetch_grads is
    False; keep_output_traces brings V_out and I_out."""
    data = make_data(30, seed=3, n_spikes=30)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    net = cuda_net("sum_weigh_exp", np.float32, train_tau=True)
    L, N, C, T = net.n_layers, net.n_hidden, net.n_output, net.n_steps
    B = BATCH
    net.run_batch(in_ptr, in_ch, data.labels, learn=True)
    ws = net.backend.workspace
    base = B * 8 * 2 + B * (L * N + C) * 4 + B * C * 8 + B * 2 * 8
    start = ws.stats["d2h_bytes"]
    r = net.run_batch(in_ptr, in_ch, data.labels, learn=False, keep_output_traces=False)
    assert ws.stats["d2h_bytes"] - start == base
    assert r.V_out.shape == r.I_out.shape == (B, 0, C)
    assert r.V_hidden.size == 0 and r.spikes is None
    start = ws.stats["d2h_bytes"]
    r = net.run_batch(in_ptr, in_ch, data.labels, learn=True, keep_output_traces=False)
    params = sum(v.nbytes for v in net.params.values())       # all gradients, one copy
    assert ws.stats["d2h_bytes"] - start == base + params
    assert r.V_hidden.size == 0                 # the traces of the tau gradient stayed there
    assert r.grads["tau_m_hidden"].any() and not r.grads["tau_m_output"].any()
    start = ws.stats["d2h_bytes"]
    r = net.run_batch(in_ptr, in_ch, data.labels, learn=True, fetch_grads=False)
    assert ws.stats["d2h_bytes"] - start == base + B * ((T + 1) + T) * C * 4
    assert r.grads is None and r.V_out.shape == (B, T + 1, C)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_adam_equals_host_adam(dtype):
    """The Adam kernel against optim.Adam on the same gradients, over three steps with
    different gradients; and the time-constant kernel (lower bounds, then the per-step
    constants) against clip_taus and the host's lif_coefficients."""
    from eventprop.optim import Adam
    rng = np.random.default_rng(4)
    shape = (5, 7)
    host_theta = rng.normal(0, 1, shape).astype(dtype)
    ws = workspace.Workspace()
    d_theta = ws.param("theta", host_theta.copy())
    d_m = ws.param("m", np.zeros(shape, dtype))
    d_v = ws.param("v", np.zeros(shape, dtype))
    adam = Adam(0.9, 0.99, 1e-6)
    for t in range(1, 4):
        g = rng.normal(0, 1, shape).astype(dtype)
        g[0, 0] = 0.0
        adam.step({"theta": host_theta}, {"theta": g}, 1e-2, ["theta"])
        optimiser.adam(d_theta, ws.put("g", g), d_m, d_v,
                       AdamStep(0.9, 0.99, 1e-6, 1e-2, 1 - 0.9 ** t, 1 - 0.99 ** t))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(d_theta.copy_to_host(), host_theta, rtol=rtol)
    np.testing.assert_allclose(d_m.copy_to_host(), adam.m["theta"], rtol=rtol)
    np.testing.assert_allclose(d_v.copy_to_host(), adam.v["theta"], rtol=rtol)

    net = make_net("sum", dtype, hidden_type="hetLIF")
    tau_m = net.params["tau_m_hidden"].copy()
    tau_m[0, :2] = [1.0, 50.0]                   # below the bound, above it
    tau_s = net.params["tau_syn_hidden"].copy()
    tau_s[0, 2] = 0.5
    tau_s[0, 3] = tau_m[0, 3]                    # the tau_m == tau_s limit
    d = [ws.put(name, x) for name, x in (("tm", tau_m), ("ts", tau_s))]
    coeff = [ws.buffer(f"c{k}", tau_m.shape, dtype) for k in range(4)]
    optimiser.time_constants(*d, net.min_tau_m, net.min_tau_syn, net.dt, *coeff)
    net.params["tau_m_hidden"][...] = tau_m
    net.params["tau_syn_hidden"][...] = tau_s
    net.clip_taus()
    np.testing.assert_array_equal(d[0].copy_to_host(), net.params["tau_m_hidden"])
    np.testing.assert_array_equal(d[1].copy_to_host(), net.params["tau_syn_hidden"])
    expected = net.step_constants("hidden")[0]
    for k in range(4):
        np.testing.assert_allclose(coeff[k].copy_to_host(), expected[k], rtol=rtol)


def train_two_epochs(net, data, trainable, p_drop_input, pipeline=False):
    """Two epochs of Trainer.run_epoch (learning, then evaluation) on ``net``."""
    from eventprop.training.trainer import Trainer
    trainer = Trainer(net, eps=1e-6, trainable=trainable, pipeline=pipeline)
    stats = []
    for epoch in range(2):
        order = np.random.default_rng(epoch).permutation(len(data.labels))
        stats.append(trainer.run_epoch(data, order, True, rate=1e-2, epoch=epoch,
                                       p_drop_input=p_drop_input, p_drop_hidden=0.1,
                                       noise=0.1, rng=np.random.default_rng(7 + epoch),
                                       seed=5, progress=False))
        stats.append(trainer.run_epoch(data, np.arange(len(data.labels)), False,
                                       epoch=epoch, progress=False))
    return trainer, stats


@needs_cuda
@pytest.mark.parametrize("loss_type", ["sum_weigh_exp", "first_spike"])
def test_device_training_epochs_equal_cpu(loss_type, monkeypatch):
    """Trainer.run_epoch on the GPU (inputs of several trials uploaded at once, the loss and
    Adam on the device, weights and moments copied back at the end of the epoch) against the
    CPU: the same statistics, spike counts, weights, time constants and Adam moments after two
    epochs of 3 trials each (the last one smaller), with input and hidden dropout, noise, and
    trained time constants (float64: the Adam step amplifies rounding differences of small
    gradients, so this compares where there are none that matter)."""
    monkeypatch.setattr(cuda_backend, "INPUT_BLOCK_SAMPLES", 6)   # 2 trials of 3 at a time
    kw = dict(hidden_type="hetLIF", output_type="hetLI", recurrent=True, train_tau=True,
              train_tau_output=True, n_batch=3)
    n = 3 * 2 + 1
    rng = np.random.default_rng(12)
    data = SpikeData.from_lists([rng.integers(0, 30, 30) for _ in range(n)],
                                [rng.integers(0, N_IN, 30) for _ in range(n)],
                                np.arange(n) % N_OUT, 30, N_IN)
    trainable = ["w_input_hidden", "w_hidden_hidden", "w_hidden_output", "tau_m_hidden",
                 "tau_syn_hidden", "tau_m_output", "tau_syn_output"]
    cpu = make_net(loss_type, np.float64, **kw)
    gpu = cuda_net(loss_type, np.float64, **kw)
    initial_tau = cpu.params["tau_m_hidden"].copy()
    tc, sc = train_two_epochs(cpu, data, trainable, 0.2)
    tg, sg = train_two_epochs(gpu, data, trainable, 0.2)
    for a, b in zip(sc, sg):
        assert a.n_trials == b.n_trials == 3
        np.testing.assert_array_equal(a.hidden_spikes, b.hidden_spikes)
        np.testing.assert_array_equal(*(np.concatenate(s.predictions) for s in (a, b)))
        assert a.n_correct == b.n_correct
        assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-9)
    assert sc[0].hidden_spikes.sum() > 50
    assert tc.adam.t == tg.adam.t == 6
    for name in cpu.params:
        np.testing.assert_allclose(gpu.params[name], cpu.params[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    assert not np.allclose(cpu.params["tau_m_hidden"], initial_tau)   # the taus did train
    for name in trainable:
        np.testing.assert_allclose(tg.adam.m[name], tc.adam.m[name], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(tg.adam.v[name], tc.adam.v[name], rtol=1e-9, atol=1e-20)


@needs_cuda
def test_device_pipelined_training_equals_cpu(monkeypatch):
    """Pipelined learning (``Trial.pipeline``) on the GPU against the CPU: each trial's spike
    store, traces and loss terms, and each upload block's inputs, in buffers of their own until
    the next trial's backward pass has read them; the same statistics, weights and moments after
    two epochs of 3 trials (2 Adam steps each: the last trial's gradient is not applied), with
    dropout and noise (float64)."""
    monkeypatch.setattr(cuda_backend, "INPUT_BLOCK_SAMPLES", 6)   # 2 trials of 3 at a time
    n = 3 * 2 + 1
    rng = np.random.default_rng(13)
    data = SpikeData.from_lists([rng.integers(0, 30, 30) for _ in range(n)],
                                [rng.integers(0, N_IN, 30) for _ in range(n)],
                                np.arange(n) % N_OUT, 30, N_IN)
    trainable = ["w_input_hidden", "w_hidden_hidden", "w_hidden_output"]
    kw = dict(recurrent=True, n_batch=3)
    cpu = make_net("sum_weigh_exp", np.float64, **kw)
    gpu = cuda_net("sum_weigh_exp", np.float64, **kw)
    tc, sc = train_two_epochs(cpu, data, trainable, 0.2, pipeline=True)
    tg, sg = train_two_epochs(gpu, data, trainable, 0.2, pipeline=True)
    assert tc.adam.t == tg.adam.t == 4
    assert gpu.backend.workspace.alternate_inputs
    for a, b in zip(sc, sg):
        np.testing.assert_array_equal(a.hidden_spikes, b.hidden_spikes)
        assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-9)
    assert sc[0].hidden_spikes.sum() > 50
    for name in trainable:
        np.testing.assert_allclose(gpu.params[name], cpu.params[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(tg.adam.m[name], tc.adam.m[name], rtol=1e-9, atol=1e-14)


@needs_cuda
def test_device_adam_keeps_parameters_on_the_device():
    """After adam_step on the GPU the new weights stay on the device: the next trial uploads
    no parameter and copies back no gradient; reading ``params`` copies the changed ones back
    (once); a moment array loaded into ``adam.m`` (a checkpoint) is uploaded before the next
    step."""
    from eventprop.optim import Adam
    data = make_data(30, seed=2, n_spikes=30)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    net = cuda_net("sum_weigh_exp", np.float32, recurrent=True)
    adam = Adam()
    names = ["w_input_hidden", "w_hidden_output"]
    before = {k: v.copy() for k, v in net.params.items()}
    net.run_batch(in_ptr, in_ch, data.labels, learn=True, fetch_grads=False)
    net.adam_step(adam, 1e-2, names)
    ws = net.backend.workspace
    stats = dict(ws.stats)
    r = net.run_batch(in_ptr, in_ch, data.labels, learn=True, fetch_grads=False,
                      keep_output_traces=False)
    assert r.grads is None
    assert ws.stats["param_uploads"] == stats["param_uploads"]
    B, U = BATCH, net.n_layers * net.n_hidden + net.n_output
    counters = B * 8 * 2 + B * net.n_output * 8
    assert ws.stats["d2h_bytes"] - stats["d2h_bytes"] == counters + B * U * 4 + B * 2 * 8
    net.adam_step(adam, 1e-2, names)
    assert np.array_equal(net.host_params["w_input_hidden"], before["w_input_hidden"])  # not yet
    changed = net.params["w_input_hidden"]
    assert not np.array_equal(changed, before["w_input_hidden"])
    np.testing.assert_array_equal(net.params["w_hidden_hidden"], before["w_hidden_hidden"])
    down = ws.stats["d2h_bytes"]
    net.params                                    # nothing newer on the device: no copy
    assert ws.stats["d2h_bytes"] == down
    net.sync_to_host(adam)
    m = adam.m["w_hidden_output"].copy()
    assert np.abs(m).max() > 0
    adam.load_state({"adam_t": np.array(adam.t),
                     **{f"adam_m/{k}": np.zeros_like(v) for k, v in adam.m.items()},
                     **{f"adam_v/{k}": np.ones_like(v) for k, v in adam.v.items()}})
    net.run_batch(in_ptr, in_ch, data.labels, learn=True, fetch_grads=False)
    net.adam_step(adam, 1e-2, names)
    net.sync_to_host(adam)
    # from zero moments m = (1 - b1) g: not the moments before the load
    assert np.abs(adam.m["w_hidden_output"]).max() > 0
    assert not np.allclose(adam.m["w_hidden_output"], m)
    np.testing.assert_allclose(adam.v["w_hidden_output"], adam.beta2 + (1 - adam.beta2) * (
        adam.m["w_hidden_output"] / (1 - adam.beta1)) ** 2, rtol=1e-5)


@needs_cuda
def test_device_inputs_uploaded_together_equal_host_inputs():
    """upload_inputs: the inputs of three trials in one copy give the same trials as inputs
    copied per trial, and a trial with device_inputs copies no input."""
    data = make_data(30, seed=6, n_spikes=30)
    batches = [data.batch(np.array(idx)) for idx in ([0, 1, 2], [2, 0], [1, 2, 0])]
    a = cuda_net("sum_weigh_input", np.float32)
    b = cuda_net("sum_weigh_input", np.float32)
    b.track_param_changes = True
    uploaded = b.backend.upload_inputs(batches)
    for k, ((in_ptr, in_ch), dev) in enumerate(zip(batches, uploaded)):
        labels = data.labels[:in_ptr.shape[0]]
        ra = a.run_batch(in_ptr, in_ch, labels, learn=True)
        up = b.backend.workspace.stats["h2d_bytes"]
        rb = b.run_batch(in_ptr, in_ch, labels, learn=True, device_inputs=dev)
        if k > 0:   # after the parameters' first upload: the labels and the regularisation
            up = b.backend.workspace.stats["h2d_bytes"] - up   # jumps (B, L, N), no input
            assert up == labels.nbytes + len(labels) * N_HID * 4
        assert_trials_equal(ra, rb, rtol=1e-6, spikes=False)



def load_bench_script(root, name, needs=()):
    """The script bench/{name}.py as a module, loaded from its file (the scripts are not part of
    the package; ``needs``: the bench modules it imports, loaded first under their names)."""
    import importlib.util
    for module in (*needs, name):
        spec = importlib.util.spec_from_file_location(module, os.path.join(root, "bench",
                                                                           f"{module}.py"))
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[module] = loaded
        spec.loader.exec_module(loaded)
    return loaded


@needs_cuda
def test_bench_cuda_quick(tmp_path, capsys):
    """bench/bench_cuda.py --quick (tiny configurations) runs; --write creates the CUDA table in
    a copy of BENCHMARKS.md (before the SHD epoch section) and then adds rows above its
    marker."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bench_cuda = load_bench_script(root, "bench_cuda", needs=("bench_engine",))
    path = tmp_path / "BENCHMARKS.md"
    with open(os.path.join(root, "BENCHMARKS.md")) as f:
        original = f.read()
    path.write_text(original)
    args = ["--quick", "--profile", "--write", "--benchmarks", str(path)]
    results = bench_cuda.main(args)
    assert len(results) == 4 and all(r["spikes"] > 0 for r in results)
    assert all(r["profile"]["forward"] > 0 and r["profile"]["backward"] > 0 for r in results)
    bench_cuda.main(args)
    text = path.read_text()
    assert text.count(bench_cuda.ROWS_MARKER) == 1
    assert text.count("## CUDA engine") == 1
    rows = [line for line in text.splitlines() if line.startswith("| ") and "8 LIF" in line]
    assert len(rows) == 8 and all(line.count("|") == 10 for line in rows)
    if "## SHD epoch" in original:
        assert text.index("## CUDA engine") < text.index("## SHD epoch")
    assert text.replace("\n".join(rows) + "\n", "").replace(bench_cuda.TABLE, "") == original
    assert "8 LIF recurrent, B=3" in capsys.readouterr().out


class FakeCuda:
    """Stands in for ``numba.cuda`` in the select_gpu tests: GPUs with the given free memory;
    records select_device and close calls."""

    def __init__(self, free, available=True):
        self.free, self.available = list(free), available
        self.gpus = list(range(len(free)))
        self.calls = []
        self.current = None

    def is_available(self):
        return self.available

    def select_device(self, k):
        self.calls.append(("select", k))
        self.current = k

    def close(self):
        self.calls.append(("close",))
        self.current = None

    def current_context(self):
        free = self.free[self.current]

        class Context:
            def get_memory_info(self):
                return free, 80 << 30
        return Context()


@pytest.fixture
def fresh_gpu_choice(monkeypatch):
    monkeypatch.setattr(cuda_backend, "_SELECTED_GPU", None)


def test_select_gpu_by_environment(fresh_gpu_choice):
    """CUDA_VISIBLE_DEVICES True: the environment variable decides, nothing is selected."""
    fake = FakeCuda([1, 5, 3])
    assert cuda_backend.select_gpu(True, None, cuda=fake) is None
    assert cuda_backend.select_gpu(True, None, cuda=fake) is None
    assert fake.calls == []


def test_select_gpu_manual(fresh_gpu_choice):
    fake = FakeCuda([1, 5, 3])
    assert cuda_backend.select_gpu(False, 2, cuda=fake) == 2
    assert fake.calls == [("select", 2)]
    assert cuda_backend.select_gpu(False, 2, cuda=fake) == 2      # decided once per process
    assert fake.calls == [("select", 2)]
    with pytest.warns(RuntimeWarning, match="already chosen"):
        assert cuda_backend.select_gpu(False, 0, cuda=fake) == 2


def test_select_gpu_manual_out_of_range(fresh_gpu_choice):
    with pytest.raises(ValueError, match="2 GPU"):
        cuda_backend.select_gpu(False, 2, cuda=FakeCuda([1, 5]))


def test_select_gpu_most_free_memory(fresh_gpu_choice):
    """CUDA_VISIBLE_DEVICES False without manual_GPU: the device with the most free memory
    (ties: the lowest id); every probe context is closed before the choice is made."""
    fake = FakeCuda([1, 5, 3, 5])
    assert cuda_backend.select_gpu(False, None, cuda=fake) == 1
    assert fake.calls == [("select", 0), ("close",), ("select", 1), ("close",),
                          ("select", 2), ("close",), ("select", 3), ("close",), ("select", 1)]
    assert fake.current == 1


def test_select_gpu_without_gpu(fresh_gpu_choice):
    fake = FakeCuda([1, 2], available=False)
    assert cuda_backend.select_gpu(False, None, cuda=fake) is None
    assert fake.calls == []


@pytest.mark.skipif(SIMULATOR, reason="the simulator's block size is not register-bound")
def test_block_size_respects_the_kernels_register_limit(monkeypatch):
    """A block never has more threads than the compiled kernel can launch with: the units are
    spread over more rounds instead. The limit is asked once per kernel and precision."""
    class FakeKernel:
        def __init__(self, limit):
            self.limit, self.signatures = limit, []

        def compile(self, signature):
            self.signatures.append(signature)
            return type("Compiled", (), {"max_threads_per_block": self.limit})()

    monkeypatch.setattr(launch, "_THREAD_LIMITS", {})
    args = [np.zeros((2, 3), np.float32), 1.5, 3, True]
    roomy, tight = FakeKernel(1024), FakeKernel(400)
    assert launch.block_size(roomy, np.float32, 1044, args) == \
        launch.threads_per_block(1044)
    T = launch.block_size(tight, np.float32, 1044, args)
    assert T <= 400 and T % 32 == 0 and T == launch.threads_per_block(1044, 384)
    assert -(-1044 // T) == 3                          # three units per thread instead of two
    launch.block_size(tight, np.float32, 276, args)
    assert tight.signatures == [(numba.float32[:, ::1], numba.float64, numba.int64,
                                 numba.boolean)]     # compiled once per kernel and dtype
    launch.block_size(tight, np.float64, 276, args)
    assert len(tight.signatures) == 2


@pytest.mark.skipif(SIMULATOR, reason="the simulator does not compile kernels")
def test_kernels_compile_for_the_gpu():
    """Both kernels (and the models functions inlined into them) compile to PTX, for float32 and
    float64, with every option switched on (delays and sparse projections are run-time flags
    too: their arrays have the same types when empty). Needs NVVM, not a GPU."""
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        pytest.skip("NVVM (CUDA toolkit) not found: cannot compile kernels here")

    class Recorder:
        def __init__(self):
            self.args = {}

        def forward_batch(self, *args):
            self.args["forward"] = args
            cpu_kernels.forward_batch(*args)

        def backward_batch(self, *args):
            self.args["backward"] = args
            cpu_kernels.backward_batch(*args)

    for dtype in (np.float32, np.float64):
        # options are run-time flags and empty arrays, so one network covers the kernel types
        net = make_net("avg_xentropy", dtype, hidden_type="ALIF", n_layers=2, recurrent=True,
                       train_tau=True, train_tau_output=True)
        data = make_data(net.n_steps)
        in_ptr, in_ch = data.batch(np.arange(BATCH))
        rec = Recorder()
        net.backend = CpuBackend(kernels=rec)
        net.run_batch(in_ptr, in_ch, data.labels, learn=True, p_drop_hidden=0.1, noise=0.1,
                      seed=1)
        for kernel in ("forward", "backward"):
            ptxs = cuda_host.compile_ptx(kernel, *rec.args[kernel], cc=(8, 0))
            assert len(ptxs) == 2 and all(".entry" in ptx for ptx in ptxs)
    for kind in (numba.int32, numba.int64, numba.float32, numba.float64):
        ptx, _ = cuda.compile_ptx(workspace._zero_kernel.py_func, (kind[::1],), cc=(8, 0))
        assert ".entry" in ptx
    step = numba.typeof(AdamStep(0.9, 0.999, 1e-8, 1e-3, 0.1, 1e-3))
    for real in (numba.float32, numba.float64):      # the optimiser's kernels
        f64 = numba.float64
        ptx, _ = cuda.compile_ptx(optimiser._adam_kernel.py_func, (real[::1],) * 4 + (step,),
                                  cc=(8, 0))
        assert ".entry" in ptx
        ptx, _ = cuda.compile_ptx(optimiser._time_constant_kernel.py_func,
                                  (real[::1],) * 2 + (f64,) * 3 + (real[::1],) * 4, cc=(8, 0))
        assert ".entry" in ptx
        ptx, _ = cuda.compile_ptx(optimiser._delay_steps_kernel.py_func,
                                  (real[::1], numba.int32[::1], f64, f64, numba.boolean),
                                  cc=(8, 0))
        assert ".entry" in ptx


@runs_only_without_cuda
def test_cuda_simulator_subprocess():
    """Runs this file under NUMBA_ENABLE_CUDASIM=1 in a fresh process (see the module doc)."""
    run_under_simulator(__file__)


def test_select_backend():
    """BACKEND: "cpu" is the CPU backend; "auto" the GPU when one is usable (never the
    simulator), else the CPU; "cuda" without a GPU and unknown names are errors naming BACKEND."""
    assert type(select_backend("cpu")) is CpuBackend
    gpu = cuda.is_available() and not SIMULATOR
    assert type(select_backend("auto")) is (CudaBackend if gpu else CpuBackend)
    with pytest.raises(ValueError, match="BACKEND 'gpu'"):
        select_backend("gpu")
    if not cuda.is_available():
        with pytest.raises(RuntimeError, match="BACKEND 'cuda'"):
            select_backend("cuda")


@needs_cuda
def test_yinyang_trains_the_same_on_both_backends(tmp_path):
    """A whole (tiny) Yin-Yang training through the simulator class, BACKEND "cpu" against
    "cuda": the same accuracies every epoch and the same weights (float64: the GPU's other order
    of summation in the backward pass stays at rounding level)."""
    from eventprop.simulators.yinyang import p as defaults, yinyang
    runs = {}
    for backend, epochs in (("cpu", 2), ("cuda", 2), ("initial", 0)):
        p = dict(defaults, BACKEND=backend.replace("initial", "cpu"), DTYPE="float64",
                 NUM_HIDDEN=8, N_TRAIN=8, N_TEST=4, N_BATCH=8, N_EPOCH=epochs, DT_MS=1.0,
                 MODEL_SEED=3, ETA=1e-2, SHUFFLE=True, OUT_DIR=str(tmp_path / backend),
                 NAME="yy", PROGRESS=False)
        model = yinyang(p)
        out = model.train_test(p)
        assert model.network.backend.name == ("cuda" if backend == "cuda" else "cpu")
        runs[backend] = (out[4], out[5], {k: np.array(v) for k, v in model.network.params.items()})
    assert runs["cpu"][:2] == runs["cuda"][:2]
    for name, w in runs["cpu"][2].items():
        np.testing.assert_allclose(runs["cuda"][2][name], w, rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    assert not np.allclose(runs["cpu"][2]["w_input_hidden"],      # the weights did learn
                           runs["initial"][2]["w_input_hidden"])


@needs_cuda
def test_shd_trains_the_same_on_both_backends(tmp_path):
    """A whole (tiny) SHD training through ``SHD_model.train`` on official-layout files, BACKEND
    "cpu" against "cuda", with the features that touch the device path: recurrent hidden layer,
    trained time constants, input and hidden dropout, random_shift, rewiring of silent neurons, a
    weight snapshot during an epoch, a smaller last batch. The same accuracies, losses and spike
    counts every epoch, the same weights and time constants at the end (float64), and the same
    Adam state in the checkpoint."""
    from official_files import write_dataset
    from eventprop.simulators.shd import SHD_model, p as defaults
    write_dataset(tmp_path / "data", "SHD", n_train=30, n_test=8, n_classes=3, n_speakers=2)
    runs = {}
    for backend in ("cpu", "cuda"):
        out = tmp_path / backend
        p = dict(defaults, BACKEND=backend, DTYPE="float64", DATA_DIR=str(tmp_path / "data"),
                 OUT_DIR=str(out), NAME="shd", TRIAL_MS=40.0, NUM_HIDDEN=8, N_BATCH=8,
                 N_TRAIN=20, N_VALIDATE=6, N_EPOCH=2, MODEL_SEED=2, TRAIN_DATA_SEED=4,
                 PROGRESS=False, RECURRENT=True, TRAIN_TAU=True, PDROP_INPUT=0.1, PDROP_HIDDEN=0.1,
                 AUGMENTATION={"random_shift": 5}, REWIRE_SILENT=True, ETA=5e-3,
                 INPUT_HIDDEN_MEAN=0.2, INPUT_HIDDEN_STD=0.1, W_OUTPUT_EPOCH_TRIAL=[[1, 1]])
        model = SHD_model(p)
        model.train(p)
        assert model.network.backend.name == backend
        results = np.loadtxt(out / "shd_results.txt")
        with np.load(out / "shd_checkpoint_last.npz") as z:
            state = {k: z[k] for k in z.files}
        snapshot = np.load(out / "shd_w_input_hidden_e1_t1.npy")
        runs[backend] = (results, state, snapshot)
    (rc, sc, wc), (rg, sg, wg) = runs["cpu"], runs["cuda"]
    assert rc.shape == rg.shape and rc.shape[0] == 2
    np.testing.assert_allclose(rg[:, :5], rc[:, :5], rtol=1e-9, atol=1e-12)   # not the seconds
    np.testing.assert_allclose(wg, wc, rtol=1e-9, atol=1e-12)
    assert set(sg) == set(sc)
    for name, value in sc.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(sg[name], value, rtol=1e-9, atol=1e-14, err_msg=name)
        elif not name.startswith("schedule") and value.dtype.kind in "iub":
            np.testing.assert_array_equal(sg[name], value, err_msg=name)
    assert any(k.startswith("adam_m/") for k in sc) and any("tau" in k for k in sc)
