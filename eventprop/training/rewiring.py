"""Rewiring of silent hidden neurons at the end of an epoch (REWIRE_SILENT, REWIRE_LIFT)."""
import numpy as np


def rewire_silent(params, hidden_spikes, lift, mean, std, rng, lift_only_silent=False):
    """Rewiring at the end of an epoch, for every hidden layer l and the projection
    into it (input->hidden for l = 0, hidden(l-1)->hidden(l) otherwise), in place:

    * lift != 0: every weight of the projection += lift (as the original does, silent neuron or
      not); with lift_only_silent, only the incoming weights of silent neurons;
    * lift == 0: the incoming weights of every silent neuron are redrawn from N(mean, std).

    hidden_spikes (n_layers, n_hidden): spike counts of the epoch. Returns the number of silent
    neurons per layer."""
    silent = np.asarray(hidden_spikes) == 0
    for l in range(silent.shape[0]):
        W = params["w_input_hidden"] if l == 0 else params["w_hidden_hidden_fwd"][l - 1]
        cols = np.nonzero(silent[l])[0]
        if lift != 0.0 and lift_only_silent:
            W[:, cols] += W.dtype.type(lift)
        elif lift != 0.0:
            W += W.dtype.type(lift)
        elif len(cols):
            W[:, cols] = rng.normal(mean, std, (W.shape[0], len(cols))).astype(W.dtype)
    return silent.sum(axis=1)
