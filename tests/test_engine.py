"""The CPU engine: gradients against finite differences of the time-stepped loss (hidden->output
weights), spike alignment in closed form, regularisation jumps,
float32 vs float64, N_MAX_SPIKE overflow reporting, spike-store growth, dropout and noise."""

import numpy as np
import pytest

from eventprop import losses
from eventprop.models import lif_coefficients
from eventprop.network import EventPropNetwork
from eventprop.data.spikes import SpikeData

N_IN, N_HID, N_OUT = 12, 8, 3


def random_data(seed, n_samples, n_steps, n_spikes=25, n_in=N_IN):
    rng = np.random.default_rng(seed)
    steps = [rng.integers(0, n_steps, n_spikes) for _ in range(n_samples)]
    chans = [rng.integers(0, n_in, n_spikes) for _ in range(n_samples)]
    labels = np.arange(n_samples) % N_OUT
    return SpikeData.from_lists(steps, chans, labels, n_steps, n_in)


def make_net(loss_type, dt=0.5, T=40.0, dtype=np.float64, **kw):
    init = {"input_hidden": (0.6, 0.3), "hidden_output": (0.6, 0.3),
            "hidden_hidden": (0.0, 0.1), "hidden_hiddenfwd": (0.6, 0.3)}
    init.update(kw.pop("init", {}))
    args = dict(dt=dt, trial_ms=T, loss_type=loss_type, init=init, seed=3, n_batch=4,
                dtype=dtype, tau_0=2.0, tau_1=20.0, alpha=1e-3)
    args.update(kw)
    return EventPropNetwork(N_IN, N_HID, N_OUT, **args)


def batch_loss(net, data):
    in_ptr, in_ch = data.batch(np.arange(len(data)))
    return net.run_batch(in_ptr, in_ch, data.labels, learn=False).loss.mean()


def stepped_fd(net, data, name, h=1e-6):
    W = net.params[name].copy()
    fd = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        for sign in (1, -1):
            net.params[name] = W.copy()
            net.params[name][idx] += sign * h
            fd[idx] += sign * batch_loss(net, data) / (2 * h)
    net.params[name] = W
    return fd


def gradient(net, data):
    in_ptr, in_ch = data.batch(np.arange(len(data)))
    return net.run_batch(in_ptr, in_ch, data.labels, learn=True)


def rel_err(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("variant", ["feedforward", "recurrent", "two_layers", "ALIF", "hetLIF",
                                     "hetLI"])
def test_max_loss_output_gradient_equals_stepped_fd(variant):
    """For ``max`` the discrete adjoint is the exact derivative of the stepped loss with respect
    to hidden->output weights, times T: equal to rounding."""
    kw = {"feedforward": {}, "recurrent": {"recurrent": True}, "two_layers": {"n_layers": 2},
          "ALIF": {"hidden_type": "ALIF"}, "hetLIF": {"hidden_type": "hetLIF"},
          "hetLI": {"output_type": "hetLI"}}[variant]
    net = make_net("max", **kw)
    data = random_data(1, 4, net.n_steps)
    result = gradient(net, data)
    assert result.hidden_counts.sum() > 10
    fd = stepped_fd(net, data, "w_hidden_output")
    assert rel_err(net.trial_ms * result.grads["w_hidden_output"], fd) < 1e-6


@pytest.mark.parametrize("loss_type", ["sum", "sum_weigh_linear", "sum_weigh_exp",
                                       "sum_weigh_sigmoid", "sum_weigh_input", "avg_xentropy"])
def test_integral_loss_output_gradient_converges_to_stepped_fd(loss_type):
    """Integral losses: tau_m x gradient matches the stepped loss to O(dt) (point samples in the
    read-out vs. step-wise forcing); the error shrinks with dt."""
    errors = []
    for dt in (0.5, 0.1):
        net = make_net(loss_type, dt=dt, T=30.0, recurrent=True)
        data = random_data(2, 4, net.n_steps, n_spikes=40)
        result = gradient(net, data)
        fd = stepped_fd(net, data, "w_hidden_output")
        errors.append(rel_err(20.0 * result.grads["w_hidden_output"], fd))
    assert errors[0] < 0.1
    assert errors[1] < 0.4 * errors[0]


def test_first_spike_output_gradient_is_zero_in_stepped_fd_sense():
    """First-spike losses depend on spike steps only: the stepped FD of the loss is 0 in every
    weight, while EventProp gives the (nonzero) gradient of the exact spike times."""
    net = make_net("first_spike", init={"hidden_output": (1.2, 0.3)})
    data = random_data(3, 4, net.n_steps)
    result = gradient(net, data)
    assert (result.output_counts > 0).any()
    assert np.abs(result.grads["w_hidden_output"]).max() > 0
    assert np.abs(stepped_fd(net, data, "w_hidden_output")).max() == 0


def test_spike_alignment_closed_form():
    """One input spike at step m0 drives one hidden neuron to a single spike at step k; with only a
    regularisation jump R at that spike, the input weight gradient is -tau_s lambda_I(t_{m0+1})
    = -tau_s R tau_m/(tau_m - tau_s) (alpha^K - beta^K), K = k - m0 - 1."""
    dt, T, tau_m, tau_s = 1.0, 60.0, 20.0, 5.0
    net = EventPropNetwork(1, 1, 1, dt=dt, trial_ms=T, loss_type="sum", n_batch=1,
                           reg_type="simple", lbd_upper=0.5, lbd_lower=0.5, nu_upper=3.0,
                           dtype=np.float64, tau_mem=tau_m, tau_syn=tau_s)
    net.set_params({"w_input_hidden": [[8.0]], "w_hidden_output": [[0.0]]})
    m0 = 7
    data = SpikeData.from_lists([[m0]], [[0]], [0], net.n_steps, 1)
    in_ptr, in_ch = data.batch([0])
    result = net.run_batch(in_ptr, in_ch, data.labels, learn=True, keep_spikes=True)
    assert result.hidden_counts.sum() == 1
    sp_ptr, sp_idx, _ = result.spikes
    k = int(np.nonzero(np.diff(sp_ptr[0]))[0][0])
    R = -0.5 * (1 - 3.0) / 1
    alpha, beta, _, _ = lif_coefficients(tau_m, tau_s, dt)
    K = k - m0 - 1
    expected = -tau_s * R * tau_m / (tau_m - tau_s) * (alpha ** K - beta ** K)
    assert result.grads["w_input_hidden"][0, 0] == pytest.approx(expected, rel=1e-12)


def test_regularisation_jump_values():
    counts = np.array([[[0, 1, 5]], [[2, 3, 9]]])
    jump = losses.regularisation_jumps("simple", counts, 4, lbd_upper=2.0, lbd_lower=0.5,
                                       nu_upper=3.0, dtype=np.float64)
    expected = np.where(counts > 3, -2.0 * (counts - 3.0) / 4, -0.5 * (counts - 3.0) / 4)
    assert np.allclose(jump, expected)
    avg = losses.regularisation_jumps("simple", counts, 4, 2.0, 0.5, 3.0, avg_snsum=True,
                                      dtype=np.float64)
    nu = counts.sum(axis=0) / 4       # batch sum over the nominal batch size
    assert np.allclose(avg[0], np.where(nu > 3, -2.0 * (nu - 3) / 4, -0.5 * (nu - 3) / 4))
    assert np.allclose(avg[0], avg[1])
    thomas = losses.regularisation_jumps("Thomas1", counts, 4, 2.0, 0.5, 3.0, rho_upper=5.0,
                                         glb_upper=0.1, dtype=np.float64)
    extra = np.array([[[-0.1 * (6 - 5) / (3 * 4)]], [[-0.1 * (14 - 5) / (3 * 4)]]])
    assert np.allclose(thomas, expected + extra)
    assert not np.any(losses.regularisation_jumps("none", counts, 4, 2.0, 0.5, 3.0))


def test_regularisation_acts_once_per_spike_and_never_on_silent_neurons():
    """The regularisation part of the gradient is linear in LBD and vanishes for the input weights
    of neurons that never spike."""
    data = random_data(4, 4, 80)
    grads = []
    for lbd in (0.0, 1e-3, 2e-3):
        net = make_net("sum", reg_type="simple", lbd_upper=lbd, lbd_lower=lbd, nu_upper=1.0,
                       init={"input_hidden": (0.5, 0.5)})
        result = gradient(net, data)
        grads.append(result.grads["w_input_hidden"])
    silent = result.hidden_counts.sum(axis=0)[0] == 0
    assert silent.any() and (~silent).any()
    reg1, reg2 = grads[1] - grads[0], grads[2] - grads[0]
    assert np.allclose(reg2, 2 * reg1, rtol=1e-6, atol=1e-14)
    assert np.abs(reg1[:, ~silent]).max() > 0
    assert np.all(reg1[:, silent] == 0)


def test_float32_agrees_with_float64():
    data = random_data(5, 4, 80)
    r = {}
    for dtype in (np.float32, np.float64):
        net = make_net("sum_weigh_exp", dtype=dtype, recurrent=True)
        r[dtype] = gradient(net, data)
    assert np.array_equal(r[np.float32].hidden_counts, r[np.float64].hidden_counts)
    for name in ("w_input_hidden", "w_hidden_hidden", "w_hidden_output"):
        assert rel_err(r[np.float32].grads[name], r[np.float64].grads[name]) < 1e-3
    assert r[np.float32].grads["w_input_hidden"].dtype == np.float32


def test_spike_overflow_is_counted():
    data = random_data(6, 4, 80, n_spikes=60)
    net = make_net("sum", n_max_spike=1000)
    full = gradient(net, data)
    per_neuron = full.hidden_counts.max()
    assert per_neuron > 2
    net = make_net("sum", n_max_spike=2)
    capped = gradient(net, data)
    assert np.array_equal(capped.hidden_counts, full.hidden_counts)  # forward unchanged
    expected = np.maximum(full.hidden_counts - 2, 0).sum(axis=(1, 2))
    assert np.array_equal(capped.n_unstored, expected)
    assert not np.allclose(capped.grads["w_input_hidden"], full.grads["w_input_hidden"])


def test_spike_store_grows_without_changing_results():
    data = random_data(7, 4, 80, n_spikes=60)
    ref = gradient(make_net("sum"), data)
    net = make_net("sum")
    net.spike_capacity = 1
    grown = gradient(net, data)
    assert net.spike_capacity > 1
    for name in ref.grads:
        assert np.array_equal(ref.grads[name], grown.grads[name])


def test_gradients_of_a_batch_do_not_depend_on_the_batches_before():
    """The CPU backend keeps its gradient accumulators from batch to batch (the thread that
    takes a chunk zeroes it): a batch's gradients equal a fresh network's, dense and sparse, and
    the gradients it returned for the batch before are not overwritten."""
    first, second = random_data(7, 4, 80, n_spikes=60), random_data(8, 4, 80, n_spikes=60)
    for kw in ({}, {"connectivity": {"input_hidden": {"probability": 0.5}}}):
        net = make_net("sum", recurrent=True, **kw)
        g_first = gradient(net, first).grads
        kept = {name: g.copy() for name, g in g_first.items()}
        g_second = gradient(net, second).grads
        fresh = gradient(make_net("sum", recurrent=True, **kw), second).grads
        for name in fresh:
            assert np.array_equal(g_second[name], fresh[name]), name
            assert np.array_equal(g_first[name], kept[name]), name
        assert np.abs(g_first["w_input_hidden"]).max() > 0
        assert not np.array_equal(g_first["w_input_hidden"], g_second["w_input_hidden"])


def test_hidden_dropout_delays_spikes_and_is_reproducible():
    data = random_data(8, 4, 80, n_spikes=60)
    net = make_net("sum")
    in_ptr, in_ch = data.batch(np.arange(4))
    plain = net.run_batch(in_ptr, in_ch, data.labels, learn=False)
    a = net.run_batch(in_ptr, in_ch, data.labels, learn=False, p_drop_hidden=0.5, seed=11)
    b = net.run_batch(in_ptr, in_ch, data.labels, learn=False, p_drop_hidden=0.5, seed=11)
    c = net.run_batch(in_ptr, in_ch, data.labels, learn=False, p_drop_hidden=0.5, seed=12)
    assert np.array_equal(a.hidden_counts, b.hidden_counts)
    assert not np.array_equal(a.hidden_counts, c.hidden_counts)
    # a dropped crossing leaves V above threshold: spikes are delayed, so fewer, not none
    assert 0 < a.hidden_counts.sum() < plain.hidden_counts.sum()


def test_membrane_noise_changes_forward_only_when_requested():
    data = random_data(9, 4, 80)
    net = make_net("sum")
    in_ptr, in_ch = data.batch(np.arange(4))
    plain = net.run_batch(in_ptr, in_ch, data.labels, learn=False)
    noisy = net.run_batch(in_ptr, in_ch, data.labels, learn=False, noise=0.5, seed=1)
    assert not np.array_equal(plain.V_out, noisy.V_out)
    again = net.run_batch(in_ptr, in_ch, data.labels, learn=False)
    assert np.array_equal(plain.V_out, again.V_out)


def test_partial_batch_uses_nominal_batch_size():
    """A partial batch divides by the nominal N_BATCH: gradients of 2 samples with n_batch 4 are
    half those with n_batch 2."""
    data = random_data(10, 2, 80)
    g = {}
    for n_batch in (2, 4):
        net = make_net("sum", n_batch=n_batch)
        g[n_batch] = gradient(net, data).grads["w_hidden_output"]
    assert np.allclose(g[4], g[2] / 2)


@pytest.mark.parametrize("loss_type,scale", [("sum_weigh_exp", 20.0), ("max", 40.0)])
def test_output_tau_gradients_converge_to_stepped_fd(loss_type, scale):
    """LI outputs are smooth in their time constants, so the stepped loss checks the output tau
    gradients (intended integrals); the discrete error shrinks with dt."""
    errors = []
    for dt in (0.5, 0.1):
        net = make_net(loss_type, dt=dt, T=40.0, train_tau_output=True)
        data = random_data(11, 4, net.n_steps, n_spikes=40)
        result = gradient(net, data)
        for name in ("tau_m_output", "tau_syn_output"):
            fd = stepped_fd(net, data, name, h=1e-5)
            errors.append(rel_err(scale * result.grads[name], fd))
    assert max(errors[:2]) < 0.15
    assert errors[2] < 0.4 * errors[0] and errors[3] < 0.4 * errors[1]


@pytest.mark.parametrize("recurrent, n_layers", [(True, 1), (False, 2), (True, 2)])
def test_weight_gradients_after_the_loop_equal_a_row_per_spike(monkeypatch, recurrent,
                                                               n_layers):
    """Where a projection's gradients outgrow the caches, the CPU engine forms them after the
    time loop by presynaptic neuron (``kernels.LATER_BYTES``): input, hidden -> hidden and
    recurrent weights get the same gradients, to rounding, as with a row of dW per spike,
    including spikes in the last step (which change nothing) and neurons that spike several
    times or never; the other gradients and the spikes are unchanged."""
    from eventprop.backends.cpu import kernels
    data = random_data(5, 4, 80, n_spikes=60)
    last = SpikeData.from_lists([[3, 79, 79]], [[0, 0, 5]], [0], 80, N_IN)   # last-step spikes
    data = SpikeData.from_lists(
        [data.steps[data.offsets[b]:data.offsets[b + 1]] for b in range(3)] + [last.steps],
        [data.channels[data.offsets[b]:data.offsets[b + 1]] for b in range(3)] + [last.channels],
        data.labels, 80, N_IN)
    results = {}
    for threshold in (2**40, 0):
        monkeypatch.setattr(kernels, "LATER_BYTES", threshold)
        net = make_net("sum_weigh_exp", dt=1.0, T=80.0, recurrent=recurrent, n_layers=n_layers)
        results[threshold] = gradient(net, data)
    per_spike, later = results[2**40], results[0]
    np.testing.assert_array_equal(later.hidden_counts, per_spike.hidden_counts)
    assert (per_spike.hidden_counts.sum(axis=(0, 2)) > 0).all()
    assert not per_spike.grads["w_input_hidden"][~np.isin(np.arange(N_IN), data.channels)].any()
    for name, g in per_spike.grads.items():
        assert not name.startswith("w_") or g.size == 0 or np.abs(g).max() > 0, name
        np.testing.assert_allclose(later.grads[name], g, rtol=1e-12, atol=1e-15, err_msg=name)


def test_inputs_that_do_not_fit_the_network_are_errors():
    """run_batch names what does not fit instead of letting a kernel read outside its arrays:
    a trial of another length, channels beyond the inputs, labels beyond the outputs."""
    net = make_net("sum_weigh_exp", dt=1.0, T=40.0)
    data = random_data(1, 2, 40)
    in_ptr, in_ch = data.batch(np.arange(2))
    net.run_batch(in_ptr, in_ch, data.labels, learn=True)
    other = random_data(1, 2, 80)
    with pytest.raises(ValueError, match="40 steps"):
        net.run_batch(*other.batch(np.arange(2)), other.labels, learn=False)
    with pytest.raises(ValueError, match=f"input channel {N_IN} outside"):
        net.run_batch(in_ptr, np.where(in_ch == in_ch[0], N_IN, in_ch), data.labels,
                      learn=False)
    with pytest.raises(ValueError, match="labels"):
        net.run_batch(in_ptr, in_ch, np.array([0, N_OUT]), learn=False)
