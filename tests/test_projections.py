"""Delays and sparse connectivity (``eventprop.projections``) in the CPU engine: exact equality
with today's engine where they change nothing, the delivery of a delayed spike, the drawn
synapses, and what the optimiser does to delays and absent synapses. (Delay gradients against
an exact-spike-time simulation: test_delay_gradients.py; GPU: test_engine_cuda.py.)"""
import numpy as np
import pytest

from eventprop import losses, projections
from eventprop.data.spikes import SpikeData
from eventprop.network import EventPropNetwork
from eventprop.training.trainer import Trainer

B, N_IN, N, C, STEPS = 6, 12, 20, 4, 120
INIT = {"input_hidden": (0.8, 0.4), "hidden_hidden": (0.0, 0.2),
        "hidden_hiddenfwd": (0.8, 0.4), "hidden_output": (0.2, 0.2)}
ALL = projections.PROJECTIONS


def batch(seed=0, spikes=150):
    rng = np.random.default_rng(seed)
    steps = [rng.integers(0, STEPS, spikes) for _ in range(B)]
    chans = [rng.integers(0, N_IN, spikes) for _ in range(B)]
    data = SpikeData.from_lists(steps, chans, np.arange(B) % C, STEPS, N_IN)
    return data.batch(np.arange(B))


def network(dtype=np.float32, **kw):
    kw = dict(dict(n_layers=2, recurrent=True, seed=3, loss_type="sum_weigh_exp"), **kw)
    return EventPropNetwork(N_IN, N, C, dt=1.0, trial_ms=STEPS, n_batch=B, init=INIT,
                            dtype=dtype, **kw)


def run(net, seed=0):
    in_ptr, in_ch = batch(seed)
    return net.run_batch(in_ptr, in_ch, np.arange(B) % C, learn=True, keep_spikes=True)


def assert_identical(a, b):
    assert np.array_equal(a.hidden_counts, b.hidden_counts)
    assert np.array_equal(a.loss, b.loss)
    for name in a.grads:
        assert np.array_equal(a.grads[name], b.grads[name]), name


@pytest.mark.parametrize("loss_type", ["sum_weigh_exp", "avg_xentropy", "first_spike"])
def test_zero_delays_reproduce_the_network_without_delays_bit_for_bit(loss_type):
    plain = run(network(loss_type=loss_type))
    delayed = run(network(loss_type=loss_type, delays={name: (0.0, 0.0) for name in ALL},
                          train_delays=True, max_delay=20.0))
    assert (plain.hidden_counts.sum(axis=(0, 2)) > 50).all()      # both layers spike
    assert_identical(plain, delayed)
    assert all(np.abs(delayed.grads[projections.DELAY_OF[name]]).sum() > 0 for name in ALL)


def test_probability_one_reproduces_dense_bit_for_bit():
    full = {name: {"probability": 1.0} for name in ALL}
    assert_identical(run(network()), run(network(connectivity=full)))
    delays = {name: (0.0, 8.0) for name in ALL}
    assert_identical(run(network(delays=delays, train_delays=True, max_delay=8.0)),
                     run(network(delays=delays, train_delays=True, max_delay=8.0,
                                 connectivity=full)))


def test_a_delayed_input_spike_arrives_D_steps_later():
    """One input spike into one neuron: the membrane trace with delay d is the trace without
    delay shifted by D = floor(d / dt + 1/2) steps (d = 2.5 dt rounds up to 3 steps)."""
    dt = 0.5
    data = SpikeData.from_lists([np.array([4])], [np.array([0])], np.array([0]), 40, 1)
    traces = []
    for d in (0.0, 1.25):
        net = EventPropNetwork(1, 1, 1, dt=dt, trial_ms=20.0, n_batch=1, seed=0,
                               init={"input_hidden": (0.5, 0.0), "hidden_output": (1.0, 0.0)},
                               delays={"input_hidden": (d, d)}, max_delay=5.0)
        in_ptr, in_ch = data.batch(np.arange(1))
        result = net.run_batch(in_ptr, in_ch, np.zeros(1), learn=False,
                               keep_hidden_traces=True)
        traces.append(result.I_hidden[0, :, 0, 0])
    assert projections.delay_steps(1.25, dt) == 3
    assert traces[0][5] > 0 and traces[0][4] == 0      # spike of step 4 reaches I(t_5) ...
    np.testing.assert_array_equal(traces[1][3:], traces[0][:-3])   # ... 3 steps later


def test_spikes_arriving_after_the_trial_are_dropped_and_have_no_gradient():
    net = network(n_layers=1, delays={"input_hidden": (0.0, 0.0)}, train_delays=True,
                  max_delay=500.0)
    net.params["d_input_hidden"][...] = 500.0         # every input arrives after the trial
    net.params_changed()
    result = run(net)
    assert result.hidden_counts.sum() == 0
    assert not np.any(result.grads["d_input_hidden"])
    assert not np.any(result.grads["w_input_hidden"])


def test_connectivity_draws():
    net = network(n_layers=2, connectivity={
        "input_hidden": {"inputs_per_neuron": 5},
        "hidden_hidden": {"probability": 0.25, "self_connections": False},
        "hidden_hiddenfwd": {"probability": 0.5}}, seed=11)
    mask_in = net.connectivity["input_hidden"].mask
    assert (mask_in.sum(axis=0) == 5).all()
    rec = net.connectivity["hidden_hidden"].mask
    assert not rec[:, np.arange(N), np.arange(N)].any()
    assert abs(rec.mean() - 0.25 * (N - 1) / N) < 0.05
    assert abs(net.connectivity["hidden_hiddenfwd"].mask.mean() - 0.5) < 0.08
    assert not net.params["w_hidden_hidden"][~rec].any()
    conn = net.connectivity["hidden_hidden"]
    for l in range(2):
        for i in range(N):
            row = conn.post_index[l, i, :conn.row_length[l, i]]
            np.testing.assert_array_equal(row, np.flatnonzero(rec[l, i]))
    # drawn from MODEL_SEED: the same seed gives the same synapses, and the weights of the
    # dense network with that seed
    again = network(n_layers=2, connectivity={"hidden_hidden": {"probability": 0.25,
                                                                "self_connections": False}},
                    seed=11)
    np.testing.assert_array_equal(again.connectivity["hidden_hidden"].mask, rec)
    dense = network(n_layers=2, seed=11)
    np.testing.assert_array_equal(again.params["w_hidden_hidden"],
                                  dense.params["w_hidden_hidden"] * rec)
    other = network(n_layers=2, connectivity={"hidden_hidden": {"probability": 0.25}}, seed=12)
    assert not np.array_equal(other.connectivity["hidden_hidden"].mask, rec)


def test_compact_rows_and_back():
    """``projections.compact`` keeps a sparse projection's values by row of existing synapses
    (zero beyond a row's length, leading axes kept), and ``expand`` puts them back, zero where
    there is no synapse: a synapse onto neuron 0 is not overwritten by a row's padding."""
    rng = np.random.default_rng(4)
    mask = rng.random((2, 7, 9)) < 0.4
    mask[0, :, 0] = True                             # every row of layer 0 reaches neuron 0
    mask[1, 3] = False                               # an empty row
    mask[1, 4] = True                                # a full row
    conn = projections.connectivity_of(mask)
    values = rng.normal(size=mask.shape)
    rows = projections.compact(values, conn)
    assert rows.shape == (2, 7, 9)
    for l, i in np.ndindex(2, 7):
        n = conn.row_length[l, i]
        np.testing.assert_array_equal(rows[l, i, :n], values[l, i][mask[l, i]])
        assert not rows[l, i, n:].any()
    np.testing.assert_array_equal(projections.expand(rows, conn), np.where(mask, values, 0.0))
    chunks = rng.normal(size=(3,) + mask.shape)      # gradient chunks: a leading axis
    np.testing.assert_array_equal(projections.compact(chunks, conn)[2],
                                  projections.compact(chunks[2], conn))
    np.testing.assert_array_equal(projections.expand(projections.compact(chunks, conn), conn),
                                  np.where(mask, chunks, 0.0))


DELAYED = {"hidden_hidden": (0.0, 6.0)}
EVERY_DELAY = {name: (0.0, 6.0) for name in ALL}
SPARSE = {"hidden_hidden": {"probability": 0.3}, "input_hidden": {"probability": 0.5},
          "hidden_output": {"probability": 0.7}}
EVERY_SPARSE = dict(SPARSE, hidden_hiddenfwd={"inputs_per_neuron": 6})


@pytest.mark.parametrize("delays, conn", [(DELAYED, SPARSE), (EVERY_DELAY, EVERY_SPARSE),
                                          ({}, EVERY_SPARSE)])
def test_sparse_network_equals_dense_network_with_the_absent_weights_zero(delays, conn):
    """A sparse projection visits only its synapses; the result equals the dense network whose
    weights are zero where the sparse one has no synapse (to rounding: same sums, fewer
    zero terms), with and without (learned) delays on each projection."""
    learn = dict(delays=delays, train_delays=True, max_delay=6.0) if delays else {}
    sparse = network(dtype=np.float64, connectivity=conn, **learn)
    dense = network(dtype=np.float64, **learn)
    dense.set_params({k: v for k, v in sparse.params.items()})
    a, b = run(sparse), run(dense)
    assert np.array_equal(a.hidden_counts, b.hidden_counts)
    for name, g in a.grads.items():
        masked = b.grads[name]
        proj = {v: k for k, v in projections.WEIGHT_OF.items()}.get(name) or \
            {v: k for k, v in projections.DELAY_OF.items()}.get(name)
        if proj in conn:
            mask = sparse.connectivity[proj].mask
            assert not g[~mask].any(), name       # no gradient for absent synapses
            masked = np.where(mask, masked, 0.0)
        np.testing.assert_allclose(g, masked, rtol=1e-9, atol=1e-15, err_msg=name)


def test_adam_on_the_existing_synapses_equals_adam_on_every_weight():
    """Adam steps only the existing synapses of a sparse projection (``existing``): weights and
    moments equal those of a step over every element, whose absent synapses have zero gradients
    and stay as they are."""
    from eventprop.optim import Adam
    net = network(connectivity=EVERY_SPARSE, delays=EVERY_DELAY, train_delays=True,
                  max_delay=6.0)
    grads = run(net).grads
    existing = {key: np.flatnonzero(conn.mask) for name, conn in net.connectivity.items()
                for key in (projections.WEIGHT_OF[name], projections.DELAY_OF[name])}
    names = sorted(existing)
    params = [{k: net.params[k].copy() for k in names} for _ in range(2)]
    adams = [Adam(), Adam()]
    for _ in range(3):
        adams[0].step(params[0], grads, 1e-2, names, existing=existing)
        adams[1].step(params[1], grads, 1e-2, names)
    for k in names:
        assert not np.array_equal(params[0][k], net.params[k]), k
        np.testing.assert_array_equal(params[0][k], params[1][k], err_msg=k)
        np.testing.assert_array_equal(adams[0].v[k], adams[1].v[k], err_msg=k)


def test_adam_keeps_absent_synapses_at_zero_and_delays_within_bounds():
    net = network(connectivity={"hidden_hidden": {"probability": 0.2}},
                  delays={"input_hidden": (0.0, 10.0), "hidden_hidden": (0.0, 0.0)},
                  train_delays=True, max_delay=10.0)
    names = ["w_input_hidden", "w_hidden_hidden", "d_input_hidden", "d_hidden_hidden"]
    trainer = Trainer(net, eps=1e-20, trainable=names, rates={"d_input_hidden": 3.0,
                                                   "d_hidden_hidden": 3.0})
    in_ptr, in_ch = batch()
    before = {k: net.params[k].copy() for k in names}
    result = net.run_batch(in_ptr, in_ch, np.arange(B) % C, learn=True)
    net.adam_step(trainer.adam, 0.01, names)
    after = net.params
    mask = net.connectivity["hidden_hidden"].mask
    assert not after["w_hidden_hidden"][~mask].any()
    # the first Adam step moves every parameter with a gradient by its rate: 0.01 for the
    # weights, 3 ms for the delays (then clipped to [0, 10] ms)
    for name, rate in (("w_input_hidden", 0.01), ("d_input_hidden", 3.0)):
        assert np.count_nonzero(result.grads[name]) > 10
        expected = np.clip(before[name] - rate * np.sign(result.grads[name]), 0.0, 10.0) \
            if name.startswith("d_") else before[name] - rate * np.sign(result.grads[name])
        np.testing.assert_allclose(after[name], expected, rtol=1e-4, atol=1e-5)
    d = after["d_hidden_hidden"]
    assert d.min() >= 0.0 and d.max() <= 10.0 and d.max() > 0.0


def test_bad_delays_and_connectivity_name_the_problem():
    with pytest.raises(ValueError, match="unknown projection 'input_output'"):
        network(delays={"input_output": (0.0, 1.0)})
    with pytest.raises(ValueError, match="max_delay"):
        network(delays={"input_hidden": (0.0, 30.0)}, max_delay=20.0)
    with pytest.raises(ValueError, match="no projection 'hidden_hidden'"):
        network(recurrent=False, delays={"hidden_hidden": (0.0, 1.0)})
    with pytest.raises(ValueError, match=r"'probability'\] must be in \(0, 1\]"):
        network(connectivity={"input_hidden": {"probability": 1.5}})
    with pytest.raises(ValueError, match="exactly one of"):
        network(connectivity={"input_hidden": {}})
    with pytest.raises(ValueError, match="recurrent projection 'hidden_hidden' only"):
        network(connectivity={"input_hidden": {"probability": 0.5,
                                               "self_connections": False}})
    with pytest.raises(ValueError, match=r"inputs_per_neuron'\] must be an integer in \[1, 12\]"):
        network(connectivity={"input_hidden": {"inputs_per_neuron": 13}})
    net = network(delays={"input_hidden": (0.0, 2.0)}, max_delay=2.0)
    net.params["d_input_hidden"][0, 0] = 7.0
    with pytest.raises(ValueError, match="d_input_hidden.*max_delay"):
        run(net)


def test_parameter_keys_of_a_simulator():
    from eventprop.simulators.shd import validate
    with pytest.raises(ValueError, match="DELAYS"):
        validate({"DELAYS": {"input_hidden": (0.0, 200.0)}, "MAX_DELAY_MS": 150.0})
    with pytest.raises(ValueError, match="CONNECTIVITY"):
        validate({"CONNECTIVITY": {"hidden_hidden": {"p": 0.1}}})
    p = validate({"DELAYS": {"input_hidden": (0.0, 150.0)}, "TRAIN_DELAYS": True,
                  "CONNECTIVITY": {"hidden_hidden": {"probability": 0.1}}})
    assert p["ETA_DELAY"] == 0.1 and p["MAX_DELAY_MS"] == 150.0


def test_ring_buffer_memory_is_reported():
    net = network(delays={"input_hidden": (0.0, 10.0)}, max_delay=10.0)
    slots = 11
    assert net.delay_buffer_bytes(8) == 8 * slots * (3 * (2 * N + C) + N) * 4
    assert network().delay_buffer_bytes() == 0
