"""Device memory of the CUDA backend: buffers, parameters and inputs kept on the GPU from trial
to trial, and the forward and backward passes on them.

The buffers of a trial (spike store, traces, gradient sums, scratch) are allocated once per
network and reused; what must start at zero is cleared by a small kernel; parameters and Adam
moments stay on the device and are uploaded again only when the host changed them; the inputs of
many trials are uploaded in one copy (``put_inputs``); only what the host needs is copied back.
"""
import math
import time

import numpy as np
from numba import cuda

from eventprop.backends.cuda import launch
from eventprop.backends.cuda.backward import backward_launch
from eventprop.backends.cuda.forward import forward_launch
from eventprop.backends.records import Gradients, SpikeStore, Traces

# Layouts of a packed buffer kept per name (Workspace.packed).
_PACK_LAYOUTS = 4


@cuda.jit(cache=True)
def _zero_kernel(x):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for k in range(start, x.shape[0], stride):
        x[k] = 0


class _Phase:
    """Synchronised wall-clock timer of one phase of a trial (``Workspace.phase``)."""

    def __init__(self, profile, name):
        self.profile, self.name = profile, name

    def __enter__(self):
        cuda.synchronize()
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        cuda.synchronize()
        self.profile[self.name] = (self.profile.get(self.name, 0.0)
                                   + time.perf_counter() - self.start)


class Workspace:
    """The GPU memory of one network, kept from trial to trial (``backend.CudaBackend`` runs
    every trial through one):

    * ``buffer(name, shape, dtype)``: a device array that is allocated once and reused. A
      request for fewer samples (a smaller last batch) gets a view of the first rows; more
      samples, or other trailing dimensions (a larger spike store), allocate it anew.
    * ``packed(name, dtype, parts)``: several arrays in one buffer, one after the other
      (views by key), so that they are cleared by one kernel launch and come back in one copy
      (``fetch_parts``): the per-sample int64 counters of the forward pass, the gradients.
    * ``put(name, host)``: a host array copied into such a buffer (inputs, loss terms).
    * ``param(name, host, key)``: the device copy of a parameter, uploaded again only when
      ``key`` differs from the key of the last upload (``key`` None: every call).
    * ``forward(...)`` / ``backward(...)``: the kernels on device arrays. Outputs, gradient
      accumulators and scratch are buffers. What must start at zero (spike counters, overflow
      counters, gradient sums, and the spike store when the caller reads it) is cleared on the
      device by ``_zero_kernel``; the kernels write every other element themselves.
    * ``put_inputs(batches)``: the inputs of several trials in one copy (views per trial).
    * ``fetch(d)``: a new host copy of a device array; ``fetch_param(name)``, of a parameter
      (or moment); ``param_to_host(name, host)``: a parameter copied into a host array. Only
      what the host needs comes back.
    * ``phase(name)``: when ``profile`` is a dict, the seconds spent in the phase are added to
      ``profile[name]`` (synchronised timers: the GPU is idle at both ends of a phase).
    * ``trial_set``: a prefix of the names of buffers and packed buffers (not of ``shared``
      buffers, which hold state that outlives trials, such as delay steps). Pipelined learning
      (``Trial.pipeline``) runs alternate trials in two sets, so that a trial's spike store,
      traces and loss terms survive the next trial's forward pass for its backward pass; with
      ``alternate_inputs``, successive ``put_inputs`` calls use two buffers in turn for the same
      reason.

    ``stats`` counts the bytes copied each way, the parameter uploads and the allocations.
    """

    def __init__(self):
        self._buffers = {}
        self._packs = {}       # name -> {layout: (flat device array, views by key)}
        self._pack_in_use = {}  # name -> layout of the last ``packed`` call
        self._params = {}      # name -> (device array, key of the upload)
        self.profile = None
        self.stats = {"h2d_bytes": 0, "d2h_bytes": 0, "param_uploads": 0, "allocations": 0}
        self.trial_set = ""
        self.alternate_inputs = False
        self._inputs_turn = 0

    # --- memory ---------------------------------------------------------------------------
    def buffer(self, name, shape, dtype, shared=False):
        if not shared:
            name = self.trial_set + name
        shape = tuple(int(n) for n in shape)
        dtype = np.dtype(dtype)
        if 0 in shape:                           # empty: kept apart from the name's real buffer
            name = (name, shape)
        d = self._buffers.get(name)
        if (d is not None and d.dtype == dtype and d.shape[1:] == shape[1:]
                and d.shape[0] >= shape[0]):
            return d if d.shape[0] == shape[0] else d[:shape[0]]
        rows = shape[0]
        if d is not None and d.dtype == dtype and d.shape[1:] == shape[1:]:
            rows = max(rows, d.shape[0] + d.shape[0] // 4)   # growing: leave room to grow
        self._buffers.pop(name, None)            # free the old one before allocating
        d = cuda.device_array((rows,) + shape[1:], dtype)
        self._buffers[name] = d
        self.stats["allocations"] += 1
        return d if rows == shape[0] else d[:shape[0]]

    def packed(self, name, dtype, parts):
        """Views (by key) of one device buffer that holds the arrays ``parts`` ((key, shape)
        pairs) one after the other; an empty part gets an empty buffer of its own. The buffers
        of the last few layouts are kept (a full batch and a smaller last one alternate)."""
        dtype = np.dtype(dtype)
        name = self.trial_set + name
        layout = (dtype.str,) + tuple((k, tuple(int(n) for n in shape)) for k, shape in parts)
        packs = self._packs.setdefault(name, {})
        self._pack_in_use[name] = layout
        if layout in packs:
            return packs[layout][1]
        while len(packs) >= _PACK_LAYOUTS:
            del packs[next(iter(packs))]          # the oldest
        total = sum(math.prod(shape) for _, shape in layout[1:])
        flat = cuda.device_array(max(total, 1), dtype)
        self.stats["allocations"] += 1
        views, at = {}, 0
        for key, shape in layout[1:]:
            size = math.prod(shape)
            views[key] = (flat[at:at + size].reshape(shape) if size
                          else self.buffer(f"{name}/{key}", shape, dtype, shared=True))
            at += size
        packs[layout] = (flat, views)
        return views

    def clear_packed(self, name):
        """Zero the buffer of the last ``packed(name, ...)`` call (one kernel launch)."""
        name = self.trial_set + name
        self.zero(self._packs[name][self._pack_in_use[name]][0])

    def fetch_parts(self, name):
        """Host copies of the arrays of the last ``packed(name, ...)`` call (one copy), by
        key."""
        name = self.trial_set + name
        layout = self._pack_in_use[name]
        flat = self._packs[name][layout][0]
        total = sum(math.prod(shape) for _, shape in layout[1:])
        host = self.fetch(flat[:total]) if total else np.empty(0, flat.dtype)
        out, at = {}, 0
        for key, shape in layout[1:]:
            size = math.prod(shape)
            out[key] = host[at:at + size].reshape(shape)
            at += size
        return out

    def nbytes(self):
        """Bytes of device memory held (buffers, packed buffers and parameters)."""
        arrays = (list(self._buffers.values())
                  + [f for packs in self._packs.values() for f, _ in packs.values()]
                  + [d for d, _ in self._params.values()])
        return int(sum(d.size * d.dtype.itemsize for d in arrays))

    def zero(self, *arrays):
        for d in arrays:
            if d.size:
                blocks, threads = launch.flat_launch(d.size)
                _zero_kernel[blocks, threads](d.reshape(d.size))

    # --- transfers ------------------------------------------------------------------------
    def put(self, name, host, shared=False):
        host = np.ascontiguousarray(host)
        d = self.buffer(name, host.shape, host.dtype, shared)
        if host.size:
            d.copy_to_device(host)
            self.stats["h2d_bytes"] += host.nbytes
        return d

    def param(self, name, host, key=None):
        entry = self._params.get(name)
        if (key is not None and entry is not None and entry[1] is not None
                and _same_key(entry[1], key)):
            return entry[0]
        host = np.ascontiguousarray(host)
        if entry is None or entry[0].shape != host.shape or entry[0].dtype != host.dtype:
            self._params.pop(name, None)
            d = cuda.device_array(host.shape, host.dtype)
            self.stats["allocations"] += 1
        else:
            d = entry[0]
        if host.size:
            d.copy_to_device(host)
            self.stats["h2d_bytes"] += host.nbytes
        self.stats["param_uploads"] += 1
        self._params[name] = (d, key)
        return d

    def has_param(self, name, key):
        """Whether ``param(name, ..., key)`` would find its upload with this key."""
        entry = self._params.get(name)
        return entry is not None and entry[1] is not None and _same_key(entry[1], key)

    def device_param(self, name):
        """The device copy of parameter ``name`` as it is (uploaded before by ``param``)."""
        return self._params[name][0]

    def param_to_host(self, name, host):
        """Copy the device copy of parameter ``name`` into the host array ``host`` (in
        place), e.g. after optimiser steps on the device."""
        d = self._params[name][0]
        if d.size:
            if host.flags.c_contiguous:
                d.copy_to_host(host)
            else:
                host[...] = d.copy_to_host()
            self.stats["d2h_bytes"] += host.nbytes

    def fetch_param(self, name):
        """A new host copy of the device copy of parameter ``name``."""
        return self.fetch(self._params[name][0])

    def put_inputs(self, batches):
        """Inputs of several trials, (in_ptr, in_ch) pairs in the layout of
        ``SpikeData.batch``, copied to the device in one copy each for all pointers and all
        channels. Returns the device (in_ptr, in_ch) of every trial: in_ptr is a view of that
        trial's rows, offset to index the common channel array."""
        n_rows = sum(p.shape[0] for p, _ in batches)
        n_spikes = sum(len(c) for _, c in batches)
        n_cols = batches[0][0].shape[1] if batches else 1
        ptr = np.empty((n_rows, n_cols), dtype=np.int64)
        ch = np.empty(max(n_spikes, 1), dtype=np.int32)
        rows, row, base = [], 0, 0
        for in_ptr, in_ch in batches:
            np.add(in_ptr, base, out=ptr[row:row + in_ptr.shape[0]])
            ch[base:base + len(in_ch)] = in_ch
            rows.append((row, row + in_ptr.shape[0]))
            row += in_ptr.shape[0]
            base += len(in_ch)
        if self.alternate_inputs:
            self._inputs_turn = 1 - self._inputs_turn
        where = "inputs/" if self._inputs_turn == 0 else "inputs/other/"
        d_ptr = self.put(where + "in_ptr", ptr, shared=True)
        d_ch = self.put(where + "in_ch", ch, shared=True)
        return [(d_ptr[r0:r1], d_ch) for r0, r1 in rows]

    def fetch(self, d):
        host = np.empty(d.shape, d.dtype)
        if d.size:
            d.copy_to_host(host)
            self.stats["d2h_bytes"] += host.nbytes
        return host

    def phase(self, name):
        return _NO_PHASE if self.profile is None else _Phase(self.profile, name)

    # --- kernels ---------------------------------------------------------------------------
    def forward(self, params, synapses, model, inputs, options, capacity, clear_store=False):
        """Forward pass of the batch on device records, with room for ``capacity`` stored spikes
        per sample. Returns its (SpikeStore, Traces) of buffers. ``clear_store``: zero the
        spike store first (its elements beyond the stored spikes are then zero, as in a new
        host array). The ring buffers of delayed spikes are buffers too ("f_ring", and
        "b_ring" in the backward pass), counted by ``nbytes``."""
        B = inputs.in_ptr.shape[0]
        L, N = params.h_alpha.shape
        C = params.o_alpha.shape[0]
        n_steps = model.n_steps
        dtype = np.dtype(params.W_in.dtype)
        cap = int(capacity)
        tr = (B, n_steps, L, N) if options.keep_traces else (0, 0, 0, 0)
        # the int64 per-sample results in one buffer: one clear, one copy back ("counters")
        counters = self.packed("counters", np.int64, (("sp_need", (B,)), ("n_unstored", (B,)),
                                                      ("first_step", (B, C))))
        store = SpikeStore(sp_ptr=self.buffer("sp_ptr", (B, n_steps + 1), np.int64),
                           sp_idx=self.buffer("sp_idx", (B, cap), np.int32),
                           sp_imv=self.buffer("sp_imv", (B, cap), dtype),
                           sp_b=self.buffer("sp_b", (B, cap if model.alif else 0), dtype),
                           sp_need=counters["sp_need"], n_unstored=counters["n_unstored"],
                           counts=self.buffer("counts", (B, L * N + C), np.int32),
                           first_step=counters["first_step"])
        traces = Traces(V_out=self.buffer("V_out_tr", (B, n_steps + 1, C), dtype),
                        I_out=self.buffer("I_out_tr", (B, n_steps, C), dtype),
                        V_h=self.buffer("V_h_tr", tr, dtype), I_h=self.buffer("I_h_tr", tr, dtype))
        if B == 0:
            return store, traces
        self.zero(store.counts)
        self.clear_packed("counters")
        if clear_store:
            self.zero(store.sp_idx, store.sp_imv, store.sp_b)
        launch.run(forward_launch(params, synapses, model, inputs, options, store, traces,
                                  self.buffer))
        return store, traces

    def backward(self, params, synapses, model, inputs, options, store, terms, traces, shapes):
        """Backward pass on device records; ``shapes``: those of the ``Gradients`` fields
        (``base.gradient_shapes``). Returns the batch ``Gradients``, device arrays of shape
        (1, ...) in one packed buffer ("grads": ``fetch_parts("grads")`` copies them back),
        zeroed before the kernels add into them."""
        B = inputs.in_ptr.shape[0]
        dtype = np.dtype(params.W_out.dtype)
        shapes = tuple((1,) + tuple(int(n) for n in shape) for shape in shapes)
        grads = Gradients(**self.packed("grads", dtype, tuple(zip(Gradients._fields, shapes))))
        self.clear_packed("grads")
        if B == 0:
            return grads
        launch.run(backward_launch(params, synapses, model, inputs, options, store, terms, traces,
                                   grads, self.buffer))
        return grads


def _same_key(a, b):
    """Keys of ``Workspace.param``: tuples compared item by item, objects by identity (a host
    array stands for itself), everything else by ``==``."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same_key(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is b
    return type(a) is type(b) and a == b


class _NoPhase:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NO_PHASE = _NoPhase()
