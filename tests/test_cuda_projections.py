"""Delays and sparse connectivity (``eventprop.projections``) on the CUDA backend against the CPU
backend: the same spikes and spike store, gradients (weights and learned delays) to rounding, and
a training run with learned delays (Adam, clipping and delay steps on the device) equal to the
CPU's.

Runs as ``test_engine_cuda.py`` does (whose twin kernels it uses): under numba's CUDA simulator in
a fresh process (``test_cuda_simulator_subprocess``), or directly where ``numba.cuda`` works
(``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_projections.py``, or a GPU). Tiny networks: 6
inputs, 8 hidden neurons per layer, 3 outputs, 40 steps of 1 ms, 3 samples.
"""
import numpy as np
import pytest

from cuda_simulator import needs_cuda, run_under_simulator, runs_only_without_cuda
from eventprop import projections
from eventprop.backends import CpuBackend
from eventprop.backends.cuda import backend as cuda_backend
from eventprop.backends.cuda import launch
from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from test_engine_cuda import GRADS, RTOL, TwinKernels, compare

N_IN, N_HID, N_OUT, BATCH, STEPS = 6, 8, 3, 3, 40
MAX_DELAY = 12.0
SHORT = dict(zip(projections.PROJECTIONS, ("in", "fwd", "rec", "out")))


def make_net(dtype=np.float32, loss_type="sum_weigh_exp", **kw):
    init = {"input_hidden": (0.9, 0.4), "hidden_output": (0.6, 0.3),
            "hidden_hidden": (0.1, 0.3), "hidden_hiddenfwd": (0.9, 0.4)}
    init.update(kw.pop("init", {}))
    args = dict(dt=1.0, trial_ms=float(STEPS), loss_type=loss_type, init=init, seed=3,
                n_batch=BATCH, dtype=dtype, tau_0=2.0, tau_1=20.0, alpha=1e-3,
                max_delay=MAX_DELAY)
    args.update(kw)
    return EventPropNetwork(N_IN, N_HID, N_OUT, **args)


def make_data(n_samples=BATCH, seed=1, n_spikes=30):
    rng = np.random.default_rng(seed)
    return SpikeData.from_lists([rng.integers(0, STEPS, n_spikes) for _ in range(n_samples)],
                                [rng.integers(0, N_IN, n_spikes) for _ in range(n_samples)],
                                np.arange(n_samples) % N_OUT, STEPS, N_IN)


def run_twin(dtype=np.float32, **kw):
    net = make_net(dtype, **kw)
    data = make_data()
    in_ptr, in_ch = data.batch(np.arange(BATCH))
    twin = TwinKernels(net)
    net.backend = CpuBackend(kernels=twin)
    result = net.run_batch(in_ptr, in_ch, data.labels, learn=True, keep_spikes=True,
                           keep_hidden_traces=True)
    return net, twin, result


def spikes_arriving_after_the_trial(net, twin):
    """The stored hidden spikes (step n, unit) with a delayed synapse whose spike arrives after
    the last step (n + D >= n_steps), counted over the samples."""
    _, synapses, model, _, _, store, _ = twin.calls[0][1]
    L, N = net.n_layers, net.n_hidden
    count = 0
    for b in range(store.sp_ptr.shape[0]):
        for n in range(model.n_steps):
            for s in range(store.sp_ptr[b, n], store.sp_ptr[b, n + 1]):
                g = store.sp_idx[b, s]
                if g >= L * N:
                    continue
                l, i = divmod(int(g), N)
                rows = [synapses.D_out[i] if l == L - 1 and synapses.D_out.size else None,
                        synapses.D_fwd[l, i] if l < L - 1 and synapses.D_fwd.size else None,
                        synapses.D_rec[l, i] if synapses.D_rec.size else None]
                count += any(r is not None and (n + r >= model.n_steps).any() for r in rows)
    return count


# network options of each case: every delayed projection; fixed and learned delays; sparse
# projections of both kinds (probability, inputs per neuron), without self-connections
CASES = {
    "delays-in-rec-out": dict(recurrent=True, train_delays=True,
                              delays={"input_hidden": (0.0, 12.0), "hidden_hidden": (1.0, 12.0),
                                      "hidden_output": (0.0, 12.0)}),
    "delays-fixed-rec-out": dict(recurrent=True, train_delays=False,
                                 delays={"hidden_hidden": (0.0, 6.0),
                                         "hidden_output": (2.0, 12.0)}),
    "delays-2layers-fwd": dict(n_layers=2, train_delays=True,
                               delays={"hidden_hiddenfwd": (1.0, 12.0)}),
    "sparse": dict(recurrent=True, init={"input_hidden": (1.5, 0.5)},
                   connectivity={"input_hidden": {"inputs_per_neuron": 3},
                                 "hidden_hidden": {"probability": 0.3,
                                                   "self_connections": False},
                                 "hidden_output": {"probability": 0.5}}),
    "sparse-2layers": dict(n_layers=2, recurrent=True, init={"hidden_hiddenfwd": (1.2, 0.4)},
                           connectivity={"input_hidden": {"probability": 0.6},
                                         "hidden_hiddenfwd": {"inputs_per_neuron": 4},
                                         "hidden_hidden": {"probability": 0.3,
                                                           "self_connections": False}}),
    "delays-sparse-2layers": dict(
        n_layers=2, recurrent=True, train_delays=True,
        init={"input_hidden": (1.2, 0.4), "hidden_hiddenfwd": (1.2, 0.4)},
        delays={"input_hidden": (0.0, 8.0), "hidden_hiddenfwd": (0.0, 12.0),
                "hidden_hidden": (1.0, 12.0), "hidden_output": (0.0, 12.0)},
        connectivity={"input_hidden": {"probability": 0.6},
                      "hidden_hiddenfwd": {"inputs_per_neuron": 4},
                      "hidden_hidden": {"probability": 0.3, "self_connections": False},
                      "hidden_output": {"probability": 0.6}}),
}


def check_case(case, dtype):
    net, twin, result = run_twin(dtype, **CASES[case])
    assert result.hidden_counts.sum() > 20                 # the comparison is not vacuous
    assert (result.hidden_counts.sum(axis=(0, 2)) > 0).all()    # every layer spikes
    compare(twin, RTOL[dtype])
    gpu_grads = twin.calls[-1][2][GRADS]                    # the CUDA kernels' gradients
    grads = {name: g.sum(axis=0) for name, g in zip(gpu_grads._fields, gpu_grads)}
    if net.delays:
        assert spikes_arriving_after_the_trial(net, twin) > 0
        synapses = twin.calls[0][1][1]
        assert all(getattr(synapses, "D_" + SHORT[name]).max() > 0 for name in net.delays)
    for name in net.delays:                # learned delays have gradients, fixed ones none
        dd = grads["dd_" + SHORT[name]]
        assert (np.abs(dd).max() > 0) if net.train_delays else dd.size == 0
    for name, conn in net.connectivity.items():    # absent synapses: exactly zero gradients
        for key in (projections.WEIGHT_OF[name], projections.DELAY_OF[name]):
            g = result.grads.get(key)                # the CPU's, in the dense shape
            if g is not None:
                assert not g[~conn.mask].any() and np.abs(g[conn.mask]).max() > 0, key
    return net, twin


@needs_cuda
@pytest.mark.parametrize("case", list(CASES))
def test_projections_on_cuda_equal_cpu(case):
    check_case(case, np.float32)


@needs_cuda
@pytest.mark.parametrize("case", ["delays-in-rec-out", "delays-sparse-2layers"])
def test_projections_on_cuda_equal_cpu_float64(case):
    check_case(case, np.float64)


@needs_cuda
def test_zero_learned_delays_on_cuda_equal_cpu():
    """Delays that are all zero come without delay steps (``network.synapses``): both engines
    run the plain paths and still give the delays' gradients."""
    zero = {name: (0.0, 0.0) for name in projections.PROJECTIONS}
    net, twin, result = run_twin(np.float32, n_layers=2, recurrent=True, train_delays=True,
                                 delays=zero)
    assert (result.hidden_counts.sum(axis=(0, 2)) > 0).all()
    synapses = twin.calls[0][1][1]
    assert all(getattr(synapses, "D_" + short).size == 0 for short in SHORT.values())
    compare(twin, RTOL[np.float32])
    gpu_grads = twin.calls[-1][2][GRADS]
    for short in SHORT.values():
        assert np.abs(getattr(gpu_grads, "dd_" + short)).max() > 0, short


@needs_cuda
@pytest.mark.parametrize("threads, shared", [(3, True), (40, False)])
def test_projections_block_size_and_global_memory(threads, shared, monkeypatch):
    """Delays and sparse rows with groups of 2 lanes per spike and a thread in no group (3
    threads), and with 40 threads (more than the units) and the spike lists and postsynaptic
    adjoints in global memory."""
    monkeypatch.setattr(launch, "THREADS_PER_BLOCK", threads)
    if not shared:
        monkeypatch.setattr(launch, "SHARED_BYTES", 0)
    check_case("delays-sparse-2layers", np.float32)


def cuda_net(**kw):
    net = make_net(np.float64, backend="cuda", **kw)
    assert isinstance(net.backend, cuda_backend.CudaBackend)
    return net


TRAINED = dict(recurrent=True, train_delays=True, n_batch=3,
               delays={"input_hidden": (0.0, 12.0), "hidden_hidden": (1.0, 12.0),
                       "hidden_output": (0.0, 12.0)},
               connectivity={"input_hidden": {"inputs_per_neuron": 4},
                             "hidden_hidden": {"probability": 0.3, "self_connections": False}})


@needs_cuda
def test_device_training_with_learned_delays_equals_cpu(monkeypatch):
    """Trainer.run_epoch with learned delays on the CUDA backend (Adam on the device, the delays'
    own learning rate, clipping to [0, max_delay] and the delay steps recomputed there) against
    the CPU: after an epoch of three learning trials (the last one smaller) and an evaluation,
    the same statistics, weights, delays and Adam moments (float64); the device's delay steps
    are those of the delays; the ring buffers are workspace buffers."""
    from eventprop.training.trainer import Trainer
    monkeypatch.setattr(cuda_backend, "INPUT_BLOCK_SAMPLES", 6)   # 2 trials of 3 at a time
    data = make_data(n_samples=7, seed=2)
    delays = [projections.DELAY_OF[name] for name in TRAINED["delays"]]
    trainable = ["w_input_hidden", "w_hidden_hidden", "w_hidden_output"] + delays
    rates = {name: 2.0 for name in delays}       # ms per step: some delays reach the bounds
    nets = {"cpu": make_net(np.float64, **TRAINED), "cuda": cuda_net(**TRAINED)}
    initial = {name: nets["cpu"].params[name].copy() for name in delays}
    stats, trainers = {}, {}
    for kind, net in nets.items():
        trainer = Trainer(net, eps=1e-6, trainable=trainable, rates=rates)
        order = np.random.default_rng(0).permutation(len(data.labels))
        stats[kind] = [trainer.run_epoch(data, order, True, rate=1e-2, seed=5, progress=False),
                       trainer.run_epoch(data, np.arange(len(data.labels)), False,
                                         progress=False)]
        trainers[kind] = trainer
    for a, b in zip(stats["cpu"], stats["cuda"]):
        assert a.n_trials == b.n_trials == 3
        np.testing.assert_array_equal(a.hidden_spikes, b.hidden_spikes)
        assert a.n_correct == b.n_correct
        assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-9)
    assert stats["cpu"][0].hidden_spikes.sum() > 50
    cpu, gpu = nets["cpu"], nets["cuda"]
    for name in cpu.params:
        np.testing.assert_allclose(gpu.params[name], cpu.params[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    for name in trainable:
        np.testing.assert_allclose(trainers["cuda"].adam.m[name], trainers["cpu"].adam.m[name],
                                   rtol=1e-9, atol=1e-14, err_msg=name)
    clipped = 0
    ws = gpu.backend.workspace
    for proj in TRAINED["delays"]:
        d = gpu.params[projections.DELAY_OF[proj]]
        assert not np.allclose(d, initial[projections.DELAY_OF[proj]])   # the delays learned
        assert d.min() >= 0.0 and d.max() <= MAX_DELAY
        clipped += int((d == 0.0).sum() + (d == MAX_DELAY).sum())
        D = ws.fetch(gpu.backend._delay_steps(gpu, proj))
        np.testing.assert_array_equal(D, projections.delay_steps_array(d, gpu.dt))
        np.testing.assert_array_equal(D, getattr(cpu.synapses(), "D_" + SHORT[proj]))
    assert clipped > 0
    S, U = projections.ring_slots(MAX_DELAY, 1.0), N_HID + N_OUT
    assert ws._buffers["f_ring"].shape == (3, S, U)
    assert ws._buffers["b_ring"].shape == (3, S, 2 * U)
    assert ws._buffers["b_lamD_in"].shape == (3, STEPS, N_HID)


@runs_only_without_cuda
def test_cuda_simulator_subprocess():
    """Runs this file under NUMBA_ENABLE_CUDASIM=1 in a fresh process (see the module doc)."""
    run_under_simulator(__file__)
