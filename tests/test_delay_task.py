"""Learned delays matter: a task that only a network with delays can solve.

Two input channels each spike once. In class 0 channel 0 leads channel 1 by GAP ms, in class 1
channel 1 leads channel 0 by GAP ms; the first spike comes at a random time. GAP is six membrane
time constants, so without delays a hidden neuron sees two separate input spikes in either class
(the first one's trace has decayed to 0.3 %), and a time-invariant read-out (the integral of the
output voltage, loss "sum") cannot tell the order. A hidden neuron whose input delays differ by
GAP sees the two spikes together in one class only: a coincidence detector, which learned delays
can build.
"""
import numpy as np

from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.training.trainer import Trainer

GAP = 60.0            # ms between the two input spikes
TRIAL = 200.0         # ms
N_TRAIN, N_TEST = 64, 64
EPOCHS = 60


def timing_data(n, seed):
    """n samples of the two-channel order task (1 ms steps)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    steps, chans = [], []
    for label in labels:
        t0 = int(rng.integers(0, 10))
        first, second = (0, 1) if label == 0 else (1, 0)
        steps.append(np.array([t0, t0 + int(GAP)]))
        chans.append(np.array([first, second]))
    return SpikeData.from_lists(steps, chans, labels, int(TRIAL), 2)


def train_and_test(delays):
    """Test accuracy after training weights, and delays if ``delays``, on the task."""
    net = EventPropNetwork(2, 16, 2, tau_mem=10.0, tau_syn=5.0, dt=1.0, trial_ms=TRIAL,
                           loss_type="sum", n_batch=16, seed=2,
                           init={"input_hidden": (4.0, 1.0), "hidden_output": (0.0, 0.5)},
                           delays={"input_hidden": (0.0, GAP)} if delays else None,
                           max_delay=GAP, train_delays=delays, reg_type="none")
    names = ["w_input_hidden", "w_hidden_output"] + (["d_input_hidden"] if delays else [])
    trainer = Trainer(net, trainable=names, rates={"d_input_hidden": 2.0})
    train, test = timing_data(N_TRAIN, 1), timing_data(N_TEST, 2)
    rng = np.random.default_rng(3)
    for epoch in range(EPOCHS):
        trainer.run_epoch(train, rng.permutation(N_TRAIN), learn=True, rate=0.02, epoch=epoch,
                          progress=False)
    return trainer.run_epoch(test, np.arange(N_TEST), learn=False, progress=False).accuracy


def test_learned_delays_solve_a_timing_task_that_weights_alone_cannot():
    with_delays = train_and_test(True)
    without = train_and_test(False)
    print(f"test accuracy with learned delays {with_delays:.3f}, without {without:.3f}")
    assert without <= 0.7
    assert with_delays >= 0.9
