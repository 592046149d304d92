"""Synaptic delays: self-checks of the exact reference simulation (tests/exact_reference.py) with
continuous delays, and the engine's delay (and weight) gradients of delayed networks against
central finite differences of the exact loss.

Set-up as in tests/test_exact_gradients.py (whose helpers are reused): 5 inputs, 5 hidden per
layer, 3 outputs, 3 samples, T = 30 ms, float64, dt = 0.01 ms, input spikes on a 0.1 ms grid, the
same scale factors of the engine gradients (tau_m g for sum*/avg_xentropy, T g for max, g for the
first-spike losses) and the same comparison (relative error norm and cosine per parameter array).

Delays. The engine rounds a delay d to D = floor(d/dt + 1/2) steps, and a spike of step n (the
engine's spike at t_{n+1}) reaches the postsynaptic current at t_{n+1+D}. The delays used here are
multiples of 0.1 ms, so the engine's and the exact simulation's arrival times agree up to the
O(dt) of the spike times themselves. The exact simulation takes continuous delays: a spike at t
of i makes I_j jump by W[i, j] at t + D[i, j]; the reference gradient dL/dd is the central
difference of the exact loss in each delay (step H_DELAY ms), which is smooth as long as no spike
count changes (asserted for every perturbation, as for the weights).
"""
import functools

import numpy as np
import pytest

import exact_reference as er
import test_exact_gradients as teg
from eventprop import losses
from eventprop.network import EventPropNetwork

N_IN, N_HID, N_OUT, N_SAMPLES = teg.N_IN, teg.N_HID, teg.N_OUT, teg.N_SAMPLES
T, DT, LABELS = teg.T, teg.DT, teg.LABELS
H_WEIGHT = teg.H          # finite-difference step of the weights (units of theta)
H_DELAY = 1e-5            # finite-difference step of the delays (ms)
DELAY_GRID = 0.1          # delays are rounded to multiples of this (ms)

DELAY_PARAMS = {"input_hidden": "d_input_hidden", "hidden_hiddenfwd": "d_hidden_hidden_fwd",
                "hidden_hidden": "d_hidden_hidden", "hidden_output": "d_hidden_output"}

# Delayed network variants. kw: EventPropNetwork arguments; delays: (low, high) per delayed
# projection (drawn by the engine, then rounded to DELAY_GRID); init: weight (mean, std) per
# projection; seed: parameter seed; data: input seed; losses: the loss types checked;
# weights: the weight arrays whose gradients are checked too. (two_layer with seed 1: the max
# loss's w_input_hidden gradient is off by 0.075, cosine 0.9975, at dt = 0.01 ms, an O(dt) error:
# 0.029 at 0.005 ms, 0.0067 at 0.0025 ms; seed 2 is less sensitive.)
CONFIGS = {
    "feedforward": dict(kw=dict(recurrent=False),
                        delays={"input_hidden": (0.1, 3.0), "hidden_output": (0.1, 3.0)},
                        seed=1, data=1, losses=losses.LI_LOSSES,
                        weights=("w_input_hidden", "w_hidden_output")),
    "recurrent": dict(kw=dict(recurrent=True), delays={"hidden_hidden": (0.5, 3.0)},
                      seed=1, data=1, losses=losses.LI_LOSSES,
                      weights=("w_input_hidden", "w_hidden_hidden", "w_hidden_output")),
    "two_layer": dict(kw=dict(n_layers=2, recurrent=False),
                      delays={"hidden_hiddenfwd": (0.5, 3.0)},
                      init={"input_hidden": (0.7, 0.5), "hidden_hiddenfwd": (0.7, 0.5)},
                      seed=2, data=1, losses=("sum", "max", "avg_xentropy"),
                      weights=("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_output")),
    "first_spike": dict(kw=dict(recurrent=True),
                        delays={"input_hidden": (0.1, 3.0), "hidden_hidden": (0.5, 3.0),
                                "hidden_output": (0.1, 3.0)},
                        init={"hidden_output": (1.0, 0.5)}, seed=1, data=1,
                        losses=losses.FIRST_SPIKE_LOSSES,
                        weights=("w_input_hidden", "w_hidden_hidden", "w_hidden_output")),
}
MAX_DELAY = 5.0


# ------------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------------

def make_net(name, loss_type, dt):
    """Engine network of configuration ``name`` with delays on DELAY_GRID; its parameters do not
    depend on loss or dt."""
    cfg = CONFIGS[name]
    init = dict(teg.BASE_INIT, **cfg.get("init", {}))
    net = EventPropNetwork(N_IN, N_HID, N_OUT, dt=dt, trial_ms=T, loss_type=loss_type,
                           init=init, seed=cfg["seed"], n_batch=N_SAMPLES, dtype=np.float64,
                           delays=cfg["delays"], max_delay=MAX_DELAY, train_delays=True,
                           **teg.LOSS_PARAMS, **cfg["kw"])
    p = net.params
    p["w_hidden_output"][...] = np.abs(p["w_hidden_output"])
    for proj in cfg["delays"]:
        d = p[DELAY_PARAMS[proj]]
        d[...] = np.round(d / DELAY_GRID) * DELAY_GRID
    net.params_changed()
    return net


def exact_net(net, params):
    """The exact simulation's description of ``net`` with the parameter arrays ``params``
    (weights, time constants and delays)."""
    p = params
    desc = dict(W_in=p["w_input_hidden"], W_fwd=list(p["w_hidden_hidden_fwd"]),
                W_rec=list(p["w_hidden_hidden"]) if net.recurrent else None,
                W_out=p["w_hidden_output"], tau_m_h=list(p["tau_m_hidden"]),
                tau_s_h=list(p["tau_syn_hidden"]), tau_m_o=p["tau_m_output"],
                tau_s_o=p["tau_syn_output"], theta=net.v_thresh, hidden_type=net.hidden_type,
                tau_b=net.tau_b, b_incr=net.b_incr, out_spiking=net.output_spiking)
    if "d_input_hidden" in p:
        desc["D_in"] = p["d_input_hidden"]
    if "d_hidden_hidden_fwd" in p:
        desc["D_fwd"] = list(p["d_hidden_hidden_fwd"])
    if "d_hidden_hidden" in p:
        desc["D_rec"] = list(p["d_hidden_hidden"])
    if "d_hidden_output" in p:
        desc["D_out"] = p["d_hidden_output"]
    return desc


def checked_params(name):
    cfg = CONFIGS[name]
    return list(cfg["weights"]) + [DELAY_PARAMS[proj] for proj in cfg["delays"]]


def exact_losses(net, params, times, loss_types, input_g):
    """Spike counts (hidden, output) and the batch-mean exact loss of every loss type, for
    ``net`` with the parameter arrays ``params``."""
    return teg.exact_losses(net, times, loss_types, input_g, exact_net(net, params))


@functools.lru_cache(maxsize=None)
def finite_differences(name):
    """Central differences of the exact batch-mean loss of every loss type of ``name`` in every
    checked weight and delay; asserts that no perturbation changes a spike count."""
    cfg = CONFIGS[name]
    net = make_net(name, cfg["losses"][0], DT)
    params = {k: np.array(v, dtype=np.float64) for k, v in net.params.items()}
    times = teg.input_times(cfg["data"])
    input_g = teg.input_readout_weights(times, DT, net.tau_accumulator)
    counts, _ = exact_losses(net, params, times, cfg["losses"], input_g)
    grads = {lt: {} for lt in cfg["losses"]}
    changed = []
    for pname in checked_params(name):
        P0 = params[pname]
        h = H_DELAY if pname.startswith("d_") else H_WEIGHT
        for lt in cfg["losses"]:
            grads[lt][pname] = np.zeros(P0.shape)
        for idx in np.ndindex(P0.shape):
            values = []
            for sign in (1.0, -1.0):
                P = P0.copy()
                P[idx] += sign * h
                c, v = exact_losses(net, dict(params, **{pname: P}), times, cfg["losses"],
                                    input_g)
                if not (np.array_equal(c[0], counts[0]) and np.array_equal(c[1], counts[1])):
                    changed.append((pname, idx, sign))
                values.append(v)
            for lt in cfg["losses"]:
                grads[lt][pname][idx] = (values[0][lt] - values[1][lt]) / (2 * h)
    assert not changed, f"perturbations that change a spike count: {changed}"
    return dict(params=params, counts=counts, grads=grads)


def engine_gradients(name, loss_type, dt):
    """Scaled engine gradients of the checked parameters and the engine's spike counts."""
    ref = finite_differences(name)
    net = make_net(name, loss_type, dt)
    net.set_params(ref["params"])
    in_ptr, in_ch = teg.engine_batch(teg.input_times(CONFIGS[name]["data"]), dt, net.n_steps)
    result = net.run_batch(in_ptr, in_ch, LABELS, learn=True)
    assert result.n_unstored.sum() == 0
    scale = teg.gradient_scale(net)
    grads = {k: scale * np.asarray(result.grads[k]) for k in checked_params(name)}
    return grads, (result.hidden_counts, result.output_counts)


# ------------------------------------------------------------------------------------------------
# exact reference: self-checks of the delays
# ------------------------------------------------------------------------------------------------

def _spike_list(r):
    return [s for layer in r["hidden_spikes"] for s in layer] + list(r["output_spikes"])


def _random_net(rng, L, recurrent, out_spiking=False):
    N, C = N_HID, N_OUT
    return dict(W_in=rng.normal(0.7, 0.5, (N_IN, N)),
                W_fwd=list(rng.normal(0.7, 0.5, (L - 1, N, N))),
                W_rec=list(rng.normal(0.0, 0.2, (L, N, N))) if recurrent else None,
                W_out=np.abs(rng.normal(0.5, 0.5, (N, C))),
                tau_m_h=[np.full(N, 20.0)] * L, tau_s_h=[np.full(N, 5.0)] * L,
                tau_m_o=np.full(C, 20.0), tau_s_o=np.full(C, 5.0), theta=1.0,
                out_spiking=out_spiking)


@pytest.mark.parametrize("hidden_type", ["LIF", "ALIF"])
def test_exact_zero_delays_reproduce_undelayed(hidden_type):
    """Explicit zero delays (the queue of arrivals) give the spike times and read-outs of the
    simulation without delays."""
    rng = np.random.default_rng(3)
    L = 2
    net = dict(_random_net(rng, L, recurrent=True, out_spiking=True), hidden_type=hidden_type,
               tau_b=20.0, b_incr=0.3)
    zero = dict(net, D_in=np.zeros((N_IN, N_HID)), D_fwd=[np.zeros((N_HID, N_HID))],
                D_rec=[np.zeros((N_HID, N_HID))] * L, D_out=np.zeros((N_HID, N_OUT)))
    times = teg.input_times(1)
    plain = er.simulate_exact(net, times, T)
    delayed = er.simulate_exact(zero, times, T)
    n_spikes = 0
    for a, b in zip(plain, delayed):
        for sa, sb in zip(_spike_list(a), _spike_list(b)):
            assert sa.size == sb.size
            np.testing.assert_allclose(sb, sa, rtol=0, atol=1e-12)
            n_spikes += sa.size
        t = np.linspace(0.0, T, 3001)
        np.testing.assert_allclose(b["V"](t), a["V"](t), rtol=0, atol=1e-12)
    assert n_spikes >= 30
    for lt in ("sum", "max", "avg_xentropy", "first_spike"):
        assert abs(er.exact_loss(zero, times, LABELS, T, lt)
                   - er.exact_loss(net, times, LABELS, T, lt)) < 1e-12


def test_exact_single_delayed_synapse_closed_form():
    """One input spike at t0 through one synapse with delay d: the hidden V is the free solution
    started at t0 + d (0 before); with a suprathreshold weight, the hidden spike is that of the
    undelayed synapse shifted by d, and the output V is the free solution started at the spike
    time plus the output delay. Arrivals at or after T are dropped."""
    tau_m, tau_s, theta = 20.0, 5.0, 1.0
    t0, d, d_out = 2.25, 1.75, 0.875
    t = np.linspace(0.0, 12.0, 2401)

    def net(w, d_in, out_delay=True):
        desc = dict(W_in=[[w]], W_fwd=[], W_rec=None, W_out=[[0.8]], tau_m_h=[[tau_m]],
                    tau_s_h=[[tau_s]], tau_m_o=[tau_m], tau_s_o=[tau_s], theta=theta,
                    D_in=[[d_in]])
        if out_delay:
            desc["D_out"] = [[d_out]]
        return desc

    # subthreshold: hidden V is the shifted free solution, arrival time is a segment break
    r = er.simulate_exact(net(1.5, d), [[[t0]]], 12.0)[0]
    s = t - (t0 + d)
    expected = np.where(s >= 0.0, er.free_v(np.maximum(s, 0.0), 0.0, 1.5, tau_m, tau_s), 0.0)
    np.testing.assert_allclose(r["V"](t)[:, 0], expected, rtol=0, atol=1e-13)
    assert r["hidden_spikes"][0][0].size == 0
    assert np.any(np.abs(r["seg_t"] - (t0 + d)) < 1e-15)
    assert np.all(r["V"](t)[:, 1] == 0.0)

    # suprathreshold: spike shifted by d; the output sees it d_out later
    w = 10.0
    undelayed = er.simulate_exact(net(w, 0.0, out_delay=False), [[[t0]]], 12.0)[0]
    t_sp0 = undelayed["hidden_spikes"][0][0]
    assert t_sp0.size == 1
    assert abs(er.free_v(t_sp0[0] - t0, 0.0, w, tau_m, tau_s) - theta) < 1e-12
    r = er.simulate_exact(net(w, d), [[[t0]]], 12.0)[0]
    t_sp = r["hidden_spikes"][0][0]
    np.testing.assert_allclose(t_sp, t_sp0 + d, rtol=0, atol=1e-12)
    s = t - (t_sp[0] + d_out)
    expected = np.where(s >= 0.0, er.free_v(np.maximum(s, 0.0), 0.0, 0.8, tau_m, tau_s), 0.0)
    np.testing.assert_allclose(r["V_out"](t)[:, 0], expected, rtol=0, atol=1e-13)

    # an arrival at or after T is dropped
    for d_late in (9.75, 10.25):      # t0 + d_late = T exactly, and after T
        r = er.simulate_exact(net(w, d_late), [[[t0]]], 12.0)[0]
        assert np.all(r["seg_V"] == 0.0) and np.all(r["seg_I"] == 0.0)


@pytest.mark.parametrize("L,recurrent", [(1, False), (2, True)])
def test_exact_input_delay_shift(L, recurrent):
    """The network starts at rest and is time-invariant, so adding delta to every input delay
    shifts the whole run by delta: with T + delta, every spike moves by delta and
    V(t + delta) equals the undelayed V(t); the other delays stay as they are."""
    rng = np.random.default_rng(5)
    net = dict(_random_net(rng, L, recurrent, out_spiking=True),
               D_in=rng.uniform(0.0, 3.0, (N_IN, N_HID)),
               D_fwd=list(rng.uniform(0.0, 3.0, (L - 1, N_HID, N_HID))),
               D_rec=list(rng.uniform(0.5, 3.0, (L, N_HID, N_HID))) if recurrent else None,
               D_out=rng.uniform(0.0, 3.0, (N_HID, N_OUT)))
    delta = 1.37
    shifted = dict(net, D_in=net["D_in"] + delta)
    times = teg.input_times(1)
    a_all = er.simulate_exact(net, times, T)
    b_all = er.simulate_exact(shifted, times, T + delta)
    n_spikes = 0
    for a, b in zip(a_all, b_all):
        for sa, sb in zip(_spike_list(a), _spike_list(b)):
            assert sa.size == sb.size
            np.testing.assert_allclose(sb, sa + delta, rtol=0, atol=1e-10)
            n_spikes += sa.size
        t = np.linspace(0.0, T - 1e-9, 2001)
        np.testing.assert_allclose(b["V"](t + delta), a["V"](t), rtol=0, atol=1e-10)
        assert np.all(b["V"](np.linspace(0.0, delta * (1 - 1e-12), 50)) == 0.0)
    assert n_spikes >= 20 * L


# ------------------------------------------------------------------------------------------------
# engine delay gradients against the exact simulation
# ------------------------------------------------------------------------------------------------

# (relative error, cosine) bounds at dt = 0.01 ms, those of test_exact_gradients.py. Measured:
# relative errors 0.0013-0.021 (delays 0.0013-0.014), cosines >= 0.9999.
TOL = teg.TOL

CASES = [(name, lt) for name, cfg in CONFIGS.items() for lt in cfg["losses"]]


@pytest.mark.parametrize("name,loss_type", CASES, ids=[f"{n}-{lt}" for n, lt in CASES])
def test_delay_gradients_match_exact_finite_differences(name, loss_type):
    """Delays (and the weights) of delayed networks: scaled engine gradient at dt = 0.01 ms vs
    central differences of the exact loss; the engine's spike counts equal the exact ones."""
    ref = finite_differences(name)
    grads, counts = engine_gradients(name, loss_type, DT)
    assert np.array_equal(counts[0], ref["counts"][0])
    assert np.array_equal(counts[1], ref["counts"][1])
    assert ref["counts"][0].sum() >= 20
    if loss_type in losses.FIRST_SPIKE_LOSSES:
        assert np.all(ref["counts"][1][np.arange(N_SAMPLES), LABELS] > 0)
    max_err, min_cos = TOL.get(loss_type, TOL["default"])
    report = {}
    for pname, g in grads.items():
        g_fd = ref["grads"][loss_type][pname]
        assert np.linalg.norm(g_fd) > 0, pname
        report[pname] = (teg.rel_err(g, g_fd), teg.cosine(g, g_fd))
    bad = {k: v for k, v in report.items() if not (v[0] < max_err and v[1] > min_cos)}
    assert not bad, f"(rel. error, cosine) out of bounds: {bad}; all: {report}"


# Measured errors of the delays' gradients at dt = 0.1, 0.05, 0.02, 0.01 ms: feedforward-sum
# 0.15, 0.021, 0.0093, 0.0059; recurrent-sum 0.17, 0.010, 0.0064, 0.0027;
# first_spike-first_spike_exp 0.030, 0.010, 0.0055, 0.0014. (feedforward-max stalls between
# 0.05 and 0.02 ms: 0.31, 0.105, 0.103, 0.0076.)
TREND_CASES = [("feedforward", "sum"), ("recurrent", "sum"), ("first_spike", "first_spike_exp")]


@pytest.mark.parametrize("name,loss_type", TREND_CASES,
                         ids=[f"{n}-{lt}" for n, lt in TREND_CASES])
def test_delay_gradient_error_decreases_with_dt(name, loss_type):
    """The discretisation error of the delays' gradients (all delayed projections together)
    shrinks monotonically as dt goes 0.1 -> 0.05 -> 0.02 -> 0.01 ms, by more than 4x overall."""
    ref = finite_differences(name)
    keys = [DELAY_PARAMS[proj] for proj in CONFIGS[name]["delays"]]
    g_fd = np.concatenate([ref["grads"][loss_type][k].ravel() for k in keys])
    errors = []
    for dt in (0.1, 0.05, 0.02, 0.01):
        grads, _ = engine_gradients(name, loss_type, dt)
        errors.append(teg.rel_err(np.concatenate([grads[k].ravel() for k in keys]), g_fd))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.25 * errors[0], errors
