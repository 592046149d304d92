"""Projections: which synapses exist between two populations, and how long each one delays a spike.

A network has up to four projections, named as the initial-weight keys of ``p``:

    input_hidden       inputs -> hidden layer 0                       W (n_in, N)
    hidden_hiddenfwd   hidden layer l -> hidden layer l + 1           W (L - 1, N, N)
    hidden_hidden      hidden layer l -> itself (recurrent)           W (L, N, N)
    hidden_output      last hidden layer -> outputs                   W (N, C)

Every projection is dense unless ``connectivity`` says otherwise:

    {"probability": p}          each synapse exists with probability p (independently)
    {"inputs_per_neuron": k}    each postsynaptic neuron gets exactly k presynaptic partners
    "self_connections": False   (recurrent projection only) no synapse from a neuron to itself

A sparse projection keeps its weights in the dense array, with zeros where there is no synapse,
and the list of its existing synapses per presynaptic neuron (``Connectivity``): the engines
visit only those, so a spike costs work in proportion to its synapses, and the gradients of
absent synapses are zero, which leaves them at zero under Adam. The CPU engine reads and writes
a sparse projection's weights, delays and gradients by row of existing synapses (``compact``,
``expand``), contiguous in memory.

A projection with delays has one delay d (ms) per synapse, in [0, max_delay]. A spike of step n
(the engine's spike at t_{n+1}) reaches the postsynaptic current at t_{n+1+D},
D = floor(d / dt + 1/2) steps (``delay_steps``), through a ring buffer of the postsynaptic
currents of the next D_max + 1 steps.
"""
import math
from collections import namedtuple

import numpy as np

from eventprop.models import model_function

PROJECTIONS = ("input_hidden", "hidden_hiddenfwd", "hidden_hidden", "hidden_output")
WEIGHT_OF = dict(zip(PROJECTIONS, ("w_input_hidden", "w_hidden_hidden_fwd", "w_hidden_hidden",
                                   "w_hidden_output")))
DELAY_OF = dict(zip(PROJECTIONS, ("d_input_hidden", "d_hidden_hidden_fwd", "d_hidden_hidden",
                                  "d_hidden_output")))
CONNECTIVITY_KEYS = ("probability", "inputs_per_neuron", "self_connections")

Connectivity = namedtuple("Connectivity", ["mask", "post_index", "row_length", "dense_index",
                                           "row_index"])
Connectivity.__doc__ = ("The synapses of a sparse projection: mask (..., n_pre, n_post) bool, "
                        "post_index (..., n_pre, K) int32: the postsynaptic neurons of each "
                        "presynaptic neuron in increasing order (padded with 0 beyond "
                        "row_length), row_length (..., n_pre) int32; each existing synapse's "
                        "flat position in the dense array (dense_index, increasing) and in the "
                        "rows (..., n_pre, K) of ``compact`` (row_index, in the same order).")


@model_function
def delay_steps(d, dt):
    """The integer delay (steps) of a delay d (ms): D = floor(d / dt + 1/2)."""
    return math.floor(d / dt + 0.5)


def delay_steps_array(d, dt):
    """``delay_steps`` of every element of ``d`` (int32, same shape)."""
    return np.floor(np.asarray(d, dtype=np.float64) / dt + 0.5).astype(np.int32)


def ring_slots(max_delay, dt):
    """Slots of the ring buffers: the longest delay in steps, plus one."""
    return delay_steps(float(max_delay), float(dt)) + 1


def check_connectivity(name, spec, n_pre):
    """A ``ValueError`` naming the projection for a malformed connectivity ``spec``."""
    if name not in PROJECTIONS:
        raise ValueError(f"connectivity: unknown projection {name!r}; projections are "
                         f"{PROJECTIONS}")
    if not isinstance(spec, dict):
        raise ValueError(f"connectivity[{name!r}] must be a dict such as {{'probability': 0.1}}"
                         f", not {spec!r}")
    unknown = sorted(set(spec) - set(CONNECTIVITY_KEYS))
    if unknown:
        raise ValueError(f"connectivity[{name!r}]: unknown key(s) {unknown}; keys are "
                         f"{CONNECTIVITY_KEYS}")
    if ("probability" in spec) == ("inputs_per_neuron" in spec):
        raise ValueError(f"connectivity[{name!r}] needs exactly one of 'probability' and "
                         f"'inputs_per_neuron'")
    if "probability" in spec:
        q = spec["probability"]
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
            raise ValueError(f"connectivity[{name!r}]['probability'] must be in (0, 1], "
                             f"not {q!r}")
    else:
        k = spec["inputs_per_neuron"]
        most = n_pre - (0 if spec.get("self_connections", True) else 1)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= most:
            raise ValueError(f"connectivity[{name!r}]['inputs_per_neuron'] must be an integer "
                             f"in [1, {most}], not {k!r}")
    if "self_connections" in spec:
        if not isinstance(spec["self_connections"], bool):
            raise ValueError(f"connectivity[{name!r}]['self_connections'] must be True or "
                             f"False")
        if name != "hidden_hidden":
            raise ValueError(f"connectivity[{name!r}]: 'self_connections' applies to the "
                             f"recurrent projection 'hidden_hidden' only")


def draw_mask(spec, shape, rng):
    """The synapses (bool, ``shape`` = (..., n_pre, n_post)) of a connectivity ``spec``, drawn
    from ``rng``; one independent draw per leading index (layer)."""
    *layers, n_pre, n_post = shape
    self_connections = spec.get("self_connections", True)
    mask = np.zeros(shape, dtype=bool)
    for layer in np.ndindex(*layers):
        if "probability" in spec:
            m = rng.random((n_pre, n_post)) < spec["probability"]
            if not self_connections:
                np.fill_diagonal(m, False)
        else:
            m = np.zeros((n_pre, n_post), dtype=bool)
            for j in range(n_post):
                candidates = np.arange(n_pre)
                if not self_connections:
                    candidates = candidates[candidates != j]
                m[rng.choice(candidates, spec["inputs_per_neuron"], replace=False), j] = True
        mask[layer] = m
    return mask


def connectivity_of(mask):
    """The ``Connectivity`` of a mask (..., n_pre, n_post): the existing synapses by row."""
    row_length = mask.sum(axis=-1).astype(np.int32)
    K = max(1, int(row_length.max()) if row_length.size else 1)
    dense_index = np.flatnonzero(mask)
    # synapse q of the dense order is entry (q - first synapse of its row) of its row
    rows, post = np.divmod(dense_index, mask.shape[-1])
    first = np.concatenate(([0], np.cumsum(row_length.ravel())[:-1]))
    row_index = rows * K + np.arange(dense_index.size) - first[rows]
    post_index = np.zeros(mask.shape[:-1] + (K,), dtype=np.int32)
    post_index.reshape(-1)[row_index] = post
    return Connectivity(mask, post_index, row_length, dense_index, row_index)


def dense(shape):
    """A dense projection: empty index arrays of the right rank (``Connectivity`` fields)."""
    rank = len(shape)
    empty = np.zeros(0, dtype=np.int64)
    return Connectivity(None, np.zeros((0,) * rank, dtype=np.int32),
                        np.zeros((0,) * (rank - 1), dtype=np.int32), empty, empty)


def compact(values, conn):
    """The per-synapse ``values`` (..., n_pre, n_post) of a sparse projection by row of existing
    synapses (..., n_pre, K): entry k of row i is the synapse onto ``conn.post_index[i, k]``,
    zero beyond the row's length. The CPU engine keeps a sparse projection's weights, delays and
    their gradients in this form, so that a spike reads and writes contiguous memory. Leading
    axes beyond the projection's (chunks of gradients) are kept."""
    lead = values.shape[:values.ndim - conn.mask.ndim]
    rows = np.zeros(lead + (conn.post_index.size,), dtype=values.dtype)
    rows[..., conn.row_index] = values.reshape(lead + (-1,))[..., conn.dense_index]
    return rows.reshape(lead + conn.post_index.shape)


def expand(rows, conn):
    """The inverse of ``compact``: (..., n_pre, n_post) values, zero where there is no
    synapse."""
    lead = rows.shape[:rows.ndim - conn.post_index.ndim]
    values = np.zeros(lead + (conn.mask.size,), dtype=rows.dtype)
    values[..., conn.dense_index] = rows.reshape(lead + (-1,))[..., conn.row_index]
    return values.reshape(lead + conn.mask.shape)
