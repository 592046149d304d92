"""The CUDA engine (``engine_cuda``) against the CPU engine (``engine_cpu``): on the same inputs and
seeds, the same spikes (counts, stored spikes, first spikes, overflow counters) and the same
traces and gradients to rounding (relative 1e-4 in float32, 1e-10 in float64), for every loss,
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

Each equality test runs ``EventPropNetwork.run_batch`` with a "twin" engine in place of
``engine_cpu``: every forward and backward call runs the CPU kernel on the network's arrays and
the CUDA kernel on copies of them, and the test compares all the outputs of every call.
"""
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest
from numba import cuda
from numba.core import config

import engine_cpu
import engine_cuda
import network
from network import EventPropNetwork
from spike_data import SpikeData

SIMULATOR = bool(config.ENABLE_CUDASIM)
if SIMULATOR:
    # The simulator runs a thread per CUDA thread and polls them at every syncthreads; with
    # Python's default 5 ms switch interval each barrier costs milliseconds.
    sys.setswitchinterval(5e-5)

needs_cuda = pytest.mark.skipif(
    not cuda.is_available(),
    reason="no GPU and not under NUMBA_ENABLE_CUDASIM=1 (test_cuda_simulator_subprocess runs "
           "these tests under the simulator)")

N_IN, N_HID, N_OUT, BATCH = 10, 6, 3, 3

# positions of the outputs in the argument lists of forward_batch / backward_batch
FORWARD_OUT = {name: k for k, name in enumerate(
    ("sp_ptr", "sp_idx", "sp_imv", "sp_b", "sp_need", "n_unstored", "counts", "first_step",
     "V_out_tr", "I_out_tr", "V_h_tr", "I_h_tr"), start=27)}
BACKWARD_OUT = {name: k for k, name in enumerate(
    ("dW_in", "dW_fwd", "dW_rec", "dW_out", "dtau_m_h", "dtau_s_h", "dtau_m_o", "dtau_s_o"),
    start=40)}
EXACT = ("sp_ptr", "sp_idx", "sp_need", "n_unstored", "counts", "first_step")


class TwinEngine:
    """Stands in for ``engine_cpu`` in ``network``: runs both engines on the same arguments."""

    def __init__(self):
        self.calls = []

    def _run(self, name, args):
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        getattr(engine_cuda, name)(*copies)
        getattr(engine_cpu, name)(*args)
        self.calls.append((name, args, copies))

    def gradient_chunks(self, n_samples):
        return max(1, min(n_samples, numba.get_num_threads()))   # as the CPU engine

    def forward_batch(self, *args):
        self._run("forward_batch", args)

    def backward_batch(self, *args):
        self._run("backward_batch", args)


class engine_in_use:
    """Context: ``net`` runs on ``engine``. Covers both ways network.py may pick its engine: the
    module global ``engine_cpu`` and a per-network ``net.engine`` (the BACKEND selection)."""

    def __init__(self, net, engine):
        self.net, self.engine = net, engine

    def __enter__(self):
        self.saved = network.engine_cpu, self.net.__dict__.get("engine")
        network.engine_cpu = self.engine
        self.net.engine = self.engine

    def __exit__(self, *exc):
        network.engine_cpu = self.saved[0]
        if self.saved[1] is None:
            del self.net.engine
        else:
            self.net.engine = self.saved[1]


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
            for name, k in FORWARD_OUT.items():
                assert_close(name, cpu_args[k], gpu_args[k], rtol)
        else:   # the CPU fills K chunks, the GPU chunk 0: compare the sums
            for name, k in BACKWARD_OUT.items():
                assert_close(name, cpu_args[k].sum(axis=0), gpu_args[k].sum(axis=0), rtol)


def run_twin(loss_type, dtype=np.float32, p_drop=0.0, noise=0.0, capacity=None, **kw):
    net = make_net(loss_type, dtype, **kw)
    if capacity is not None:
        net._capacity = capacity
    data = make_data(net.n_steps)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    twin = TwinEngine()
    with engine_in_use(net, twin):
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
        sp_b = twin.calls[0][2][FORWARD_OUT["sp_b"]]
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
    assert forward_calls[0][1][FORWARD_OUT["sp_need"]].max() > 4
    compare(twin, RTOL[np.float32])


@needs_cuda
@pytest.mark.parametrize("threads", [1, 16])
def test_cuda_block_size_does_not_change_results(threads, monkeypatch):
    """One thread for all units, and more threads than units (empty chunks)."""
    monkeypatch.setattr(engine_cuda, "THREADS_PER_BLOCK", threads)
    twin, _ = run_twin("avg_xentropy", np.float32, hidden_type="ALIF", recurrent=True,
                       p_drop=0.2, noise=0.3)
    compare(twin, RTOL[np.float32])


@needs_cuda
def test_network_on_cuda_engine_equals_cpu():
    """The whole run_batch with engine_cuda in place of engine_cpu (K gradient chunks, the spike
    store growing): predictions, losses and gradients as on the CPU."""
    data = make_data(30, seed=4, n_spikes=40)
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    results = []
    for engine in (engine_cpu, engine_cuda):
        net = make_net("sum_weigh_exp", np.float32, recurrent=True, train_tau=True)
        net._capacity = 2
        with engine_in_use(net, engine):
            results.append(net.run_batch(in_ptr, in_ch, data.labels, learn=True,
                                         p_drop_hidden=0.1, noise=0.2, seed=3))
    cpu, gpu = results
    np.testing.assert_array_equal(gpu.hidden_counts, cpu.hidden_counts)
    np.testing.assert_array_equal(gpu.predictions, cpu.predictions)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-5)
    for name, g in cpu.grads.items():
        assert_close(name, g, gpu.grads[name], 1e-4)


@pytest.mark.skipif(SIMULATOR, reason="the simulator does not compile kernels")
def test_kernels_compile_for_the_gpu():
    """Both kernels (and the models functions inlined into them) compile to PTX, for float32 and
    float64, with every option switched on. Needs NVVM, not a GPU."""
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        pytest.skip("NVVM (CUDA toolkit) not found: cannot compile kernels here")

    class Recorder:
        def __init__(self):
            self.args = {}

        def gradient_chunks(self, n_samples):
            return 1

        def forward_batch(self, *args):
            self.args["forward"] = args
            engine_cpu.forward_batch(*args)

        def backward_batch(self, *args):
            self.args["backward"] = args
            engine_cpu.backward_batch(*args)

    for dtype in (np.float32, np.float64):
        # options are run-time flags and empty arrays, so one network covers the kernel types
        net = make_net("avg_xentropy", dtype, hidden_type="ALIF", n_layers=2, recurrent=True,
                       train_tau=True, train_tau_output=True)
        data = make_data(net.n_steps)
        in_ptr, in_ch = data.batch(np.arange(BATCH))
        rec = Recorder()
        with engine_in_use(net, rec):
            net.run_batch(in_ptr, in_ch, data.labels, learn=True, p_drop_hidden=0.1, noise=0.1,
                          seed=1)
        for kernel in ("forward", "backward"):
            ptx = engine_cuda.compile_ptx(kernel, *rec.args[kernel], cc=(8, 0))
            assert ".entry" in ptx


@pytest.mark.skipif(SIMULATOR or cuda.is_available(),
                    reason="the equality tests run directly in this process")
def test_cuda_simulator_subprocess():
    """Runs this file under NUMBA_ENABLE_CUDASIM=1 in a fresh process (see the module doc)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.abspath(__file__)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"CUDA simulator run failed:\n{output[-20000:]}"
    assert " passed" in output and "skipped" in output, output[-2000:]
    print(f"CUDA simulator run ({time.time() - start:.1f} s): {output.strip().splitlines()[-1]}")
