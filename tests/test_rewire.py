"""Rewiring of silent hidden neurons at the end of an epoch."""
import numpy as np

from eventprop.training.rewiring import rewire_silent


def two_layer_params():
    rng = np.random.default_rng(0)
    return {"w_input_hidden": rng.normal(0, 1, (6, 4)).astype(np.float32),
            "w_hidden_hidden_fwd": rng.normal(0, 1, (1, 4, 4)).astype(np.float32)}


COUNTS = np.array([[3, 0, 5, 0], [0, 2, 2, 2]])     # silent: layer 0 neurons 1, 3; layer 1 neuron 0


def test_redraw_replaces_only_the_inputs_of_silent_neurons():
    params = two_layer_params()
    before = {k: v.copy() for k, v in params.items()}
    n_silent = rewire_silent(params, COUNTS, 0.0, 5.0, 0.1, np.random.default_rng(1))
    assert list(n_silent) == [2, 1]
    w0, w1 = params["w_input_hidden"], params["w_hidden_hidden_fwd"][0]
    assert np.array_equal(w0[:, [0, 2]], before["w_input_hidden"][:, [0, 2]])
    assert np.all(np.abs(w0[:, [1, 3]] - 5.0) < 1.0)           # redrawn from N(5, 0.1)
    assert np.array_equal(w1[:, 1:], before["w_hidden_hidden_fwd"][0][:, 1:])
    assert np.all(np.abs(w1[:, 0] - 5.0) < 1.0)
    assert w0.dtype == np.float32


def test_lift_every_weight_or_only_those_of_silent_neurons():
    params = two_layer_params()
    before = {k: v.copy() for k, v in params.items()}
    rewire_silent(params, COUNTS, 0.5, 0.0, 1.0, None)
    assert np.allclose(params["w_input_hidden"] - before["w_input_hidden"], 0.5)
    assert np.allclose(params["w_hidden_hidden_fwd"] - before["w_hidden_hidden_fwd"], 0.5)

    params = two_layer_params()
    rewire_silent(params, COUNTS, 0.5, 0.0, 1.0, None, lift_only_silent=True)
    lifted = params["w_input_hidden"] - before["w_input_hidden"]
    assert np.allclose(lifted[:, [1, 3]], 0.5) and np.allclose(lifted[:, [0, 2]], 0.0)
    lifted = params["w_hidden_hidden_fwd"][0] - before["w_hidden_hidden_fwd"][0]
    assert np.allclose(lifted[:, 0], 0.5) and np.allclose(lifted[:, 1:], 0.0)


def test_nothing_changes_without_silent_neurons():
    params = two_layer_params()
    before = {k: v.copy() for k, v in params.items()}
    n_silent = rewire_silent(params, COUNTS + 1, 0.0, 5.0, 0.1, np.random.default_rng(1))
    assert list(n_silent) == [0, 0]
    assert all(np.array_equal(params[k], before[k]) for k in params)
