"""Pipelined learning (``PIPELINE``, ``Trial.pipeline``): the original's schedule, in which the
Adam step after training trial k applies the gradient of trial k - 1, computed by a backward pass
that runs after trial k's forward pass, with the parameters of that moment (one step newer than
those of trial k - 1's forward pass). The GPU against the CPU: test_engine_cuda.py."""
import numpy as np
import pytest

from eventprop.backends import CpuBackend
from eventprop.backends.cpu import kernels as cpu_kernels
from eventprop.backends.cpu.backend import host_parameters
from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.optim import Adam
from eventprop.training.trainer import Trainer

B, N_IN, N, C, STEPS = 4, 10, 12, 3, 60
NAMES = ["w_input_hidden", "w_hidden_hidden", "w_hidden_output"]


def network():
    return EventPropNetwork(N_IN, N, C, recurrent=True, dt=1.0, trial_ms=STEPS, n_batch=B,
                            seed=5, dtype=np.float64, loss_type="sum_weigh_exp",
                            init={"input_hidden": (0.8, 0.4), "hidden_hidden": (0.0, 0.3),
                                  "hidden_output": (0.3, 0.3)})


def data(n_samples=B * 3, seed=2):
    rng = np.random.default_rng(seed)
    return SpikeData.from_lists([rng.integers(0, STEPS, 60) for _ in range(n_samples)],
                                [rng.integers(0, N_IN, 60) for _ in range(n_samples)],
                                np.arange(n_samples) % C, STEPS, N_IN)


def trial(net, d, k, pipeline):
    idx = np.arange(k * B, (k + 1) * B)
    in_ptr, in_ch = d.batch(idx)
    return net.run_batch(in_ptr, in_ch, d.labels[idx], learn=True, pipeline=pipeline)


def test_pipelined_trial_gives_the_previous_trials_gradient():
    """The first pipelined trial gives no gradient; with unchanged parameters, every later one
    gives exactly the gradient that trial k - 1 gives without the pipeline."""
    d = data()
    net, plain = network(), network()
    first = trial(net, d, 0, True)
    assert not first.has_gradient and first.grads is None
    assert first.hidden_counts.sum() > 0
    for k in (1, 2):
        piped = trial(net, d, k, True)
        own = trial(plain, d, k - 1, False)
        assert piped.has_gradient and own.has_gradient
        for name in NAMES:
            assert np.abs(own.grads[name]).max() > 0
            np.testing.assert_array_equal(piped.grads[name], own.grads[name], err_msg=name)
    net.end_pipeline()
    assert not trial(net, d, 0, True).has_gradient      # forgotten: a new start


class BackwardWith:
    """CPU kernels whose backward pass uses the parameters ``params`` (records.Parameters)."""

    def __init__(self, params):
        self.params = params

    def forward_batch(self, *args):
        cpu_kernels.forward_batch(*args)

    def backward_batch(self, params, *args):
        cpu_kernels.backward_batch(self.params, *args)


def test_pipelined_backward_uses_the_parameters_after_the_last_step():
    """The stale gradient: trial k - 1's forward pass ran with the parameters W_(k-1), its
    backward pass (during trial k) with W_k, one Adam step newer. Reference: a trial whose
    backward kernel is handed W_k's parameters."""
    d = data()
    net = network()
    adam = Adam()
    trial(net, d, 0, True)
    before = {k: v.copy() for k, v in net.params.items()}
    second = trial(net, d, 1, True)
    net.adam_step(adam, 0.05, NAMES, second.grads)     # W_1 -> W_2 with trial 0's gradient
    third = trial(net, d, 2, True)                     # trial 1's gradient, taken with W_2
    ref = network()
    ref.set_params(before)                             # trial 1's forward pass ran with W_1
    ref.backend = CpuBackend(kernels=BackwardWith(host_parameters(net)))
    expected = trial(ref, d, 1, False)
    stale_free = trial(network_with(before), d, 1, False)
    for name in NAMES:
        np.testing.assert_array_equal(third.grads[name], expected.grads[name], err_msg=name)
    assert any(not np.allclose(third.grads[name], stale_free.grads[name], rtol=1e-6)
               for name in NAMES)                      # the schedule does change the gradient


def network_with(params):
    net = network()
    net.set_params(params)
    return net


def test_pipelined_epochs_apply_all_but_the_last_trials_gradient():
    """With the Trainer, an epoch of n learning trials takes n - 1 Adam steps; the gradient of
    its last trial is not applied, so the next epoch starts without one."""
    d = data(B * 3 - 1)                                # 3 trials, the last one smaller
    net = network()
    trainer = Trainer(net, trainable=NAMES, pipeline=True)
    start = {k: net.params[k].copy() for k in NAMES}
    for epoch in range(2):
        stats = trainer.run_epoch(d, np.arange(len(d.labels)), True, rate=1e-2, epoch=epoch,
                                  progress=False)
        assert stats.n_trials == 3
        assert trainer.adam.t == 2 * (epoch + 1)
    assert all(not np.array_equal(net.params[k], start[k]) for k in NAMES)
    plain = Trainer(network(), trainable=NAMES)
    plain.run_epoch(d, np.arange(len(d.labels)), True, rate=1e-2, progress=False)
    assert plain.adam.t == 3


def test_pipeline_key_reaches_the_trainer_and_is_checked():
    from eventprop.simulators import yinyang
    from eventprop.training.build import build_trainer
    p = yinyang.validate(dict(yinyang.p, PIPELINE=True, NUM_HIDDEN=8))
    assert build_trainer(p, yinyang.N_INPUT, yinyang.N_CLASSES).pipeline is True
    assert yinyang.validate(dict(yinyang.p))["PIPELINE"] is False
    with pytest.raises(ValueError, match="PIPELINE"):
        yinyang.validate(dict(yinyang.p, PIPELINE="yes"))
