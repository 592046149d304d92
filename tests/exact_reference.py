"""Exact continuous-time reference simulation of small spiking networks.

Used by the gradient tests: central finite differences of the losses computed here are compared
with the gradients of the time-stepped EventProp implementation.

Model (times in ms, float64). Every neuron j has one summed synaptic current I_j and a membrane
potential V_j,

    tau_s[j] dI_j/dt = -I_j,        tau_m[j] dV_j/dt = -V_j + I_j,

and a presynaptic spike of i at time t_k makes I_j jump by W[i, j] at t_k + D[i, j], where D is
the synapse's transmission delay (ms, >= 0; zero unless the network gives one, see below);
arrivals at or after T are dropped. Between events, with s = t - t0, I(t0) = I0, V(t0) = V0:

    I(s) = I0 exp(-s/tau_s)
    V(s) = V0 exp(-s/tau_m) + I0 tau_s/(tau_m - tau_s) (exp(-s/tau_m) - exp(-s/tau_s))
         = V0 exp(-s/tau_m) + I0 (s/tau_m) exp(-s r_min) h(-s |1/tau_s - 1/tau_m|)

with r_min = min(1/tau_m, 1/tau_s) and h(y) = expm1(y)/y (h(0) = 1). The second form is used
throughout: it is the same function, smooth in both time constants and exact for tau_m == tau_s,
where it reduces to V(s) = (V0 + I0 s/tau_m) exp(-s/tau_m).

Hidden neurons are LIF (spike when V reaches theta, V -> 0) or ALIF (adaptation
tau_b db/dt = -b, spike when V - theta - b reaches 0, V -> 0 and b -> b + b_incr). Output neurons
are non-spiking leaky integrators (LI) or LIF. Threshold crossings are located exactly: the
time axis between two events is split into pieces on which V - theta - b is monotone (from the
analytic stationary points), and the first piece with a sign change is refined with brentq plus
one Newton step.

Neuron order used internally: hidden layer 0 (N), ..., hidden layer L-1 (N), outputs (C).

Network dict: W_in (n_in, N), W_fwd (list of L-1 (N, N)), W_rec (list of L (N, N) or None),
W_out (N, C), all pre-major [i_pre, j_post]; tau_m_h, tau_s_h (list of L (N,)), tau_m_o, tau_s_o
(C,); theta; optional hidden_type ("LIF"/"ALIF"), tau_b, b_incr, out_spiking. Optional synaptic
delays (ms, float, >= 0) in the layout of the weights: D_in (n_in, N), D_fwd (list of L-1 (N, N)),
D_rec (list of L (N, N) or None), D_out (N, C); a missing key means zero delays for that
projection. Without any D_* key the simulation takes the original path, in which every kick lands
at its spike; with one, a queue of pending arrivals (one per synapse and distinct delay) is
merged into the event loop (the same numbers, to rounding, for zero delays).
"""
import heapq
import itertools
import math

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.optimize import brentq
from scipy.special import logsumexp

INTEGRAL_LOSSES = ("sum", "sum_weigh_linear", "sum_weigh_exp", "sum_weigh_sigmoid",
                   "sum_weigh_input")
LOSS_TYPES = INTEGRAL_LOSSES + ("max", "avg_xentropy", "first_spike", "first_spike_exp")

_GL_X, _GL_W = leggauss(10)     # Gauss-Legendre nodes/weights on [-1, 1]
_QUAD_MAX_SUB = 0.5             # longest quadrature subinterval (ms)
_XTOL = 1e-14                   # absolute root tolerance (ms)


# ---------------------------------------------------------------------------------------------
# free (event-free) dynamics
# ---------------------------------------------------------------------------------------------

def _h_vec(y):
    """h(y) = expm1(y)/y with h(0) = 1, elementwise."""
    y = np.asarray(y, dtype=np.float64)
    return np.divide(np.expm1(y), y, out=np.ones_like(y), where=y != 0.0)


def free_v(s, V0, I0, tau_m, tau_s):
    """V(s) of the event-free dynamics (see module docstring), numpy broadcasting."""
    rm = 1.0 / tau_m
    rs = 1.0 / tau_s
    E = np.exp(-s * np.minimum(rm, rs)) * _h_vec(-s * np.abs(rs - rm))
    return V0 * np.exp(-s * rm) + I0 * (s * rm) * E


def _free_v1(s, V0, I0, tau_m, tau_s):
    """Scalar version of free_v."""
    rm = 1.0 / tau_m
    rs = 1.0 / tau_s
    y = -s * abs(rs - rm)
    h = math.expm1(y) / y if y != 0.0 else 1.0
    return V0 * math.exp(-s * rm) + I0 * (s * rm) * math.exp(-s * min(rm, rs)) * h


def stationary_time(V0, I0, tau_m, tau_s):
    """Time s* >= 0 where dV/ds = 0, i.e. V(s*) = I(s*) (at most one exists); NaN if none.

    From tau_m dV/dt = I - V: with d = tau_m - tau_s, u = d (I0 - V0) / (d V0 + I0 tau_s),
        s* = tau_m tau_s log(1 + u) / d = tau_m tau_s (log1p(u)/u) (I0 - V0) / (d V0 + I0 tau_s),
    which for d = 0 is s* = tau_m (I0 - V0) / I0.
    """
    V0, I0, tau_m, tau_s = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                                 for a in (V0, I0, tau_m, tau_s)))
    d = tau_m - tau_s
    num = I0 - V0
    den = d * V0 + I0 * tau_s
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = d * num / den
        ok = np.isfinite(u) & (u > -1.0)
        u_ok = np.where(ok, u, 0.0)
        lr = np.divide(np.log1p(u_ok), u_ok, out=np.ones_like(u_ok), where=u_ok != 0.0)
        s = tau_m * tau_s * lr * num / den
    return np.where(ok & np.isfinite(s) & (s >= 0.0), s, np.nan)


def _root(fun, a, b, fa=None, fb=None, dfun=None):
    """Root of fun in [a, b] (fun(a) < 0 <= fun(b) or sign change), brentq + one Newton step."""
    fa = fun(a) if fa is None else fa
    fb = fun(b) if fb is None else fb
    if fb == 0.0:
        return b
    if fa == 0.0:
        return a
    r = brentq(fun, a, b, xtol=_XTOL, rtol=4.0 * np.finfo(float).eps, maxiter=200)
    if dfun is not None:
        fr = fun(r)
        dr = dfun(r)
        if dr != 0.0 and fr != 0.0:
            r_new = r - fr / dr
            if a <= r_new <= b and abs(fun(r_new)) <= abs(fr):
                r = r_new
    return r


def _sign_change(ga, gb):
    return (ga < 0.0 < gb) or (ga > 0.0 > gb)


# ---------------------------------------------------------------------------------------------
# network set-up
# ---------------------------------------------------------------------------------------------

class _Net:
    """Flattened network: all neurons in one vector (hidden layers, then outputs)."""

    def __init__(self, net):
        W_in = np.asarray(net["W_in"], dtype=np.float64)
        W_fwd = [np.asarray(w, dtype=np.float64) for w in (net.get("W_fwd") or [])]
        W_rec = net.get("W_rec")
        W_out = np.asarray(net["W_out"], dtype=np.float64)
        tau_m_h = [np.asarray(t, dtype=np.float64) for t in net["tau_m_h"]]
        tau_s_h = [np.asarray(t, dtype=np.float64) for t in net["tau_s_h"]]
        self.n_in, self.N = W_in.shape
        self.L = len(tau_m_h)
        self.C = W_out.shape[1]
        if len(W_fwd) != self.L - 1:
            raise ValueError("W_fwd must hold L-1 matrices")
        N, L, C = self.N, self.L, self.C
        self.n_hid = N * L
        self.M = M = self.n_hid + C
        self.out = slice(self.n_hid, M)

        self.tau_m = np.concatenate(tau_m_h + [np.asarray(net["tau_m_o"], dtype=np.float64)])
        self.tau_s = np.concatenate(tau_s_h + [np.asarray(net["tau_s_o"], dtype=np.float64)])
        self.theta = float(net["theta"])
        self.alif = net.get("hidden_type", "LIF") == "ALIF"
        self.tau_b = float(net.get("tau_b", 1.0)) if self.alif else 1.0
        self.out_spiking = bool(net.get("out_spiking", False))
        self.spiking = np.ones(M, dtype=bool)
        self.spiking[self.out] = self.out_spiking
        self.b_incr = np.zeros(M)
        if self.alif:
            self.b_incr[:self.n_hid] = float(net.get("b_incr", 0.0))

        # kicks: rows = presynaptic source, columns = postsynaptic neuron
        self.W_inp = np.zeros((self.n_in, M))
        self.W_inp[:, :N] = W_in
        self.W_post = np.zeros((M, M))
        for l in range(L):
            rows = slice(l * N, (l + 1) * N)
            if W_rec is not None and W_rec[l] is not None:
                self.W_post[rows, rows] += np.asarray(W_rec[l], dtype=np.float64)
            if l < L - 1:
                self.W_post[rows, (l + 1) * N:(l + 2) * N] += W_fwd[l]
            else:
                self.W_post[rows, self.out] += W_out
        self.post_nz = (self.W_post != 0.0) & self.spiking[None, :]

        # synaptic delays, same layout as W_inp / W_post
        keys = ("D_in", "D_fwd", "D_rec", "D_out")
        self.has_delays = any(net.get(k) is not None for k in keys)
        self.D_inp = np.zeros((self.n_in, M))
        self.D_post = np.zeros((M, M))
        if self.has_delays:
            def delay(value, shape, name):
                d = np.asarray(value, dtype=np.float64)
                if d.shape != shape:
                    raise ValueError(f"{name} has shape {d.shape}, expected {shape}")
                if not np.all(np.isfinite(d) & (d >= 0.0)):
                    raise ValueError(f"{name}: delays must be finite and >= 0")
                return d

            if net.get("D_in") is not None:
                self.D_inp[:, :N] = delay(net["D_in"], (self.n_in, N), "D_in")
            D_fwd, D_rec = net.get("D_fwd"), net.get("D_rec")
            if D_fwd is not None and len(D_fwd) != L - 1:
                raise ValueError("D_fwd must hold L-1 matrices")
            if D_rec is not None and len(D_rec) != L:
                raise ValueError("D_rec must hold L matrices (or be None)")
            for l in range(L):
                rows = slice(l * N, (l + 1) * N)
                if D_rec is not None and D_rec[l] is not None:
                    self.D_post[rows, rows] = delay(D_rec[l], (N, N), f"D_rec[{l}]")
                if l < L - 1:
                    if D_fwd is not None and D_fwd[l] is not None:
                        self.D_post[rows, (l + 1) * N:(l + 2) * N] = delay(D_fwd[l], (N, N),
                                                                           f"D_fwd[{l}]")
                elif net.get("D_out") is not None:
                    self.D_post[rows, self.out] = delay(net["D_out"], (N, C), "D_out")
        # per source: the (delay, targets, weights) groups of its non-zero synapses, one per
        # distinct delay, by increasing delay
        self.arrivals_inp = [self._groups(self.W_inp[i], self.D_inp[i]) for i in range(self.n_in)]
        self.arrivals_post = [self._groups(self.W_post[i], self.D_post[i]) for i in range(M)]

    @staticmethod
    def _groups(w_row, d_row):
        js = np.flatnonzero(w_row != 0.0)
        d_unique, inv = np.unique(d_row[js], return_inverse=True)
        return [(float(d), js[inv == k], w_row[js[inv == k]]) for k, d in enumerate(d_unique)]

    def propagate(self, V, I, b, s):
        """State after an event-free time s."""
        return (free_v(s, V, I, self.tau_m, self.tau_s), I * np.exp(-s / self.tau_s),
                b * np.exp(-s / self.tau_b))


# ---------------------------------------------------------------------------------------------
# threshold crossings
# ---------------------------------------------------------------------------------------------

def _stationary1(V0, I0, tm, ts):
    """Scalar version of stationary_time (NaN if none)."""
    d = tm - ts
    num = I0 - V0
    den = d * V0 + I0 * ts
    if den == 0.0:
        return math.nan
    u = d * num / den
    if not u > -1.0:
        return math.nan
    s = tm * ts * (math.log1p(u) / u if u != 0.0 else 1.0) * num / den
    return s if s >= 0.0 else math.nan


def _plain_crossing(V0, I0, tm, ts, theta, L):
    """First zero of f(s) = V(s) - theta in [0, L] (f(0) < 0), or inf.

    V has at most one stationary point s*, so f is monotone on [0, s*] and [s*, L].
    """
    def f(s):
        return _free_v1(s, V0, I0, tm, ts) - theta

    def df(s):
        return (I0 * math.exp(-s / ts) - _free_v1(s, V0, I0, tm, ts)) / tm

    s_st = _stationary1(V0, I0, tm, ts)
    if 0.0 < s_st < L:
        f_st = f(s_st)
        if f_st >= 0.0:
            return _root(f, 0.0, s_st, None, f_st, df)
        a = s_st
    else:
        a = 0.0
    f_L = f(L)
    if f_L >= 0.0:
        return _root(f, a, L, None, f_L, df)
    return math.inf


def _adaptive_bracket(V0, I0, b0, tm, ts, tb, theta, L):
    """Bracket of the first zero of f(s) = V(s) - theta - b0 exp(-s/tb) in [0, L], or None.

    f'(s) = (I - V)/tm + b/tb has at most two zeros: it has the sign of
    G(s) = exp(s/tb) f'(s), and G'(s) = exp(s/tb)/tm * q(s) with
    q = (I - V)(1/tb - 1/tm) - I/ts, a sum of two exponentials with at most one zero.
    """
    def I_(s):
        return I0 * math.exp(-s / ts)

    def V_(s):
        return _free_v1(s, V0, I0, tm, ts)

    def f(s):
        return V_(s) - theta - b0 * math.exp(-s / tb)

    def df(s):
        return (I_(s) - V_(s)) / tm + b0 * math.exp(-s / tb) / tb

    def q(s):
        i = I_(s)
        return (i - V_(s)) * (1.0 / tb - 1.0 / tm) - i / ts

    pts = [0.0, L]
    qa, qb = q(0.0), q(L)
    if _sign_change(qa, qb):
        pts = [0.0, _root(q, 0.0, L, qa, qb), L]
    zeros = []
    for a, b in zip(pts[:-1], pts[1:]):
        da, db = df(a), df(b)
        if _sign_change(da, db):
            zeros.append(_root(df, a, b, da, db))
    fpts = [0.0] + zeros + [L]
    fvals = [f(s) for s in fpts]
    for k in range(len(fpts) - 1):
        if fvals[k] < 0.0 <= fvals[k + 1]:
            return fpts[k], fpts[k + 1], f, df, fvals[k], fvals[k + 1]
    return None


def _crossing_times(P, idx, V, I, b, L):
    """Time s in [0, L] of the first threshold crossing of each neuron in idx, given its
    state (V, I, b) now and no further input (inf where there is none)."""
    out = np.full(idx.size, np.inf)
    Vi, Ii, bi = V[idx], I[idx], b[idx]
    imm = Vi - P.theta - bi >= 0.0      # only possible through round-off
    out[imm] = 0.0
    # V(s) <= max(V0, I0, 0) and the threshold is >= theta + b(L): cheap exclusion
    cand = ~imm & (np.maximum(Vi, Ii) >= P.theta + bi * math.exp(-L / P.tau_b))
    for k in np.flatnonzero(cand & (bi == 0.0)):
        j = idx[k]
        out[k] = _plain_crossing(float(V[j]), float(I[j]), float(P.tau_m[j]),
                                 float(P.tau_s[j]), P.theta, L)
    for k in np.flatnonzero(cand & (bi != 0.0)):
        j = idx[k]
        br = _adaptive_bracket(float(V[j]), float(I[j]), float(b[j]), float(P.tau_m[j]),
                               float(P.tau_s[j]), P.tau_b, P.theta, L)
        if br is not None:
            a_, b_, f, df, fa, fb = br
            out[k] = _root(f, a_, b_, fa, fb, df)
    return out


# ---------------------------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------------------------

def _input_events(P, spikes_in, T):
    """Sorted distinct input spike times in [0, T) and the summed current kick of each."""
    times, chans = [], []
    for i, st in enumerate(spikes_in):
        st = np.asarray(st, dtype=np.float64).ravel()
        st = st[(st >= 0.0) & (st < T)]
        times.append(st)
        chans.append(np.full(st.size, i, dtype=np.int64))
    if len(times) == 0:
        return np.zeros(0), np.zeros((0, P.M))
    times = np.concatenate(times)
    chans = np.concatenate(chans)
    u, inv = np.unique(times, return_inverse=True)
    kicks = np.zeros((u.size, P.M))
    np.add.at(kicks, inv, P.W_inp[chans])
    return u, kicks


def _simulate_one(P, spikes_in, T):
    """Event loop. Crossings are searched up to the next input spike; after a hidden or
    output spike only the neurons whose state it changed (reset or kicked) are searched again."""
    times, kicks = _input_events(P, spikes_in, T)
    M = P.M
    V, I, b = np.zeros(M), np.zeros(M), np.zeros(M)
    t = 0.0
    seg_t, seg_V, seg_I, seg_b = [0.0], [V.copy()], [I.copy()], [b.copy()]
    spikes = [[] for _ in range(M)]
    pending = np.full(M, np.inf)        # absolute time of the next crossing before t_next
    dirty = P.spiking.copy()
    k, K = 0, times.size
    while True:
        t_next = float(times[k]) if k < K else float(T)
        if dirty.any():
            idx = np.flatnonzero(dirty)
            pending[idx] = t + _crossing_times(P, idx, V, I, b, t_next - t)
            dirty[:] = False
        t_sp = pending.min()
        if t_sp <= t_next and t_sp < T:
            V, I, b = P.propagate(V, I, b, t_sp - t)
            t = t_sp
            for j in np.flatnonzero(pending == t_sp):
                spikes[j].append(t)
                V[j] = 0.0
                b[j] += P.b_incr[j]
                I = I + P.W_post[j]
                dirty |= P.post_nz[j]
                dirty[j] = True
        else:
            V, I, b = P.propagate(V, I, b, t_next - t)
            t = t_next
            if k >= K:
                break
            I = I + kicks[k]
            dirty[:] = P.spiking
            k += 1
        seg_t.append(t)
        seg_V.append(V.copy())
        seg_I.append(I.copy())
        seg_b.append(b.copy())
    return spikes, np.array(seg_t), np.array(seg_V), np.array(seg_I), np.array(seg_b)


def _simulate_delayed(P, spikes_in, T):
    """Event loop with synaptic delays: a queue (heap) of pending arrivals, each the kicks of one
    presynaptic spike that land at the same time (one entry per spike and distinct delay).

    The loop takes the earliest of the next threshold crossing and the next arrival. A spike
    resets only the spiking neuron at once and queues its arrivals (t + D, dropped at or after
    T); at every event time, after the spikes of that time, all arrivals due at it are summed
    into one kick of I (so zero delays land together with their spike). Each crossing is searched
    in the free dynamics up to T from the neuron's last change of state and stays valid until the
    next change, so only the spiking neuron and the targets of an arrival are searched again."""
    M = P.M
    counter = itertools.count()
    queue = []
    for i, st in enumerate(spikes_in):
        st = np.asarray(st, dtype=np.float64).ravel()
        for t_k in st[(st >= 0.0) & (st < T)]:
            for d, js, ws in P.arrivals_inp[i]:
                if t_k + d < T:
                    queue.append((float(t_k + d), next(counter), js, ws))
    heapq.heapify(queue)
    V, I, b = np.zeros(M), np.zeros(M), np.zeros(M)
    t = 0.0
    seg_t, seg_V, seg_I, seg_b = [0.0], [V.copy()], [I.copy()], [b.copy()]
    spikes = [[] for _ in range(M)]
    pending = np.full(M, np.inf)        # absolute time of the next crossing (free dynamics)
    dirty = P.spiking.copy()
    while True:
        t_arr = queue[0][0] if queue else float(T)
        if dirty.any():
            idx = np.flatnonzero(dirty)
            pending[idx] = t + _crossing_times(P, idx, V, I, b, T - t)
            dirty[:] = False
        t_sp = pending.min()
        if t_sp <= t_arr and t_sp < T:
            V, I, b = P.propagate(V, I, b, t_sp - t)
            t = t_sp
            for j in np.flatnonzero(pending == t_sp):
                spikes[j].append(t)
                V[j] = 0.0
                b[j] += P.b_incr[j]
                dirty[j] = True
                for d, js, ws in P.arrivals_post[j]:
                    if t + d < T:
                        heapq.heappush(queue, (t + d, next(counter), js, ws))
        else:
            V, I, b = P.propagate(V, I, b, t_arr - t)
            t = t_arr
            if not queue:
                break
        if queue and queue[0][0] <= t:
            kick = np.zeros(M)
            while queue and queue[0][0] <= t:
                _, _, js, ws = heapq.heappop(queue)
                kick[js] += ws
                dirty[js] |= P.spiking[js]
            I = I + kick
        seg_t.append(t)
        seg_V.append(V.copy())
        seg_I.append(I.copy())
        seg_b.append(b.copy())
    return spikes, np.array(seg_t), np.array(seg_V), np.array(seg_I), np.array(seg_b)


def _state_fn(seg_t, seg_V, seg_I, tau_m, tau_s):
    """Right-continuous V(t) from the event segments; V(t) for t array -> (len(t), n)."""
    def V_of_t(t):
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        i = np.clip(np.searchsorted(seg_t, t, side="right") - 1, 0, seg_t.size - 1)
        s = (t - seg_t[i])[:, None]
        return free_v(s, seg_V[i], seg_I[i], tau_m[None, :], tau_s[None, :])
    return V_of_t


def simulate_exact(net, inputs, T):
    """Exact event-driven simulation of every sample (``net``: see the module docstring; with
    any D_* key, synaptic delays).

    Returns a list (one per sample) of dicts:
      'hidden_spikes': list over layers of list over neurons of spike-time arrays,
      'output_spikes': list over outputs of spike-time arrays (empty for LI outputs),
      'seg_t', 'seg_V', 'seg_I', 'seg_b': event times (first 0) and the full state right after
          each event (spike or arrival of input or synaptic kicks; shape
          (n_events+1, L*N + C)); segment i spans [seg_t[i], seg_t[i+1]] (the last one up to
          T), state free between,
      'V': callable t -> (len(t), L*N + C) membrane potentials (right-continuous),
      'V_out': callable t -> (len(t), C) output membrane potentials,
      'T': trial length, 'n_hidden': L*N,
      'tau_m', 'tau_s': time constants of all neurons; 'tau_m_out', 'tau_s_out': of the outputs.
    """
    P = _Net(net)
    results = []
    for spikes_in in inputs:
        simulate = _simulate_delayed if P.has_delays else _simulate_one
        spikes, seg_t, seg_V, seg_I, seg_b = simulate(P, spikes_in, T)
        arr = [np.array(s, dtype=np.float64) for s in spikes]
        hidden = [arr[l * P.N:(l + 1) * P.N] for l in range(P.L)]
        out_sp = arr[P.n_hid:] if P.out_spiking else [np.zeros(0) for _ in range(P.C)]
        V_all = _state_fn(seg_t, seg_V, seg_I, P.tau_m, P.tau_s)
        V_out = _state_fn(seg_t, seg_V[:, P.out], seg_I[:, P.out], P.tau_m[P.out],
                          P.tau_s[P.out])
        results.append({"hidden_spikes": hidden, "output_spikes": out_sp, "seg_t": seg_t,
                        "seg_V": seg_V, "seg_I": seg_I, "seg_b": seg_b, "V": V_all,
                        "V_out": V_out, "T": float(T), "n_hidden": P.n_hid,
                        "tau_m": P.tau_m, "tau_s": P.tau_s,
                        "tau_m_out": P.tau_m[P.out], "tau_s_out": P.tau_s[P.out]})
    return results


def state_at(r, t):
    """(V, I) of every neuron of one simulated sample at the times t, each (len(t), L*N + C).

    Right-continuous: at an event time the state after the event (kick or reset) is returned."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    seg_t = r["seg_t"]
    i = np.clip(np.searchsorted(seg_t, t, side="right") - 1, 0, seg_t.size - 1)
    s = (t - seg_t[i])[:, None]
    tau_m, tau_s = r["tau_m"][None, :], r["tau_s"][None, :]
    return (free_v(s, r["seg_V"][i], r["seg_I"][i], tau_m, tau_s),
            r["seg_I"][i] * np.exp(-s / tau_s))


def spike_counts(net, inputs, T):
    """Spike counts: (hidden int array (n_samples, L, N), output int array (n_samples, C))."""
    res = simulate_exact(net, inputs, T)
    hid = np.array([[[s.size for s in layer] for layer in r["hidden_spikes"]] for r in res],
                   dtype=np.int64)
    out = np.array([[s.size for s in r["output_spikes"]] for r in res], dtype=np.int64)
    return hid, out.reshape(len(res), -1)


# ---------------------------------------------------------------------------------------------
# read-outs and losses
# ---------------------------------------------------------------------------------------------

def quad_nodes(breaks, T):
    """Composite Gauss-Legendre rule on [0, T] split at `breaks`, subintervals <= 0.5 ms."""
    br = np.asarray(breaks, dtype=np.float64).ravel()
    br = np.unique(np.concatenate([[0.0, T], br[(br > 0.0) & (br < T)]]))
    length = np.diff(br)
    keep = length > 0.0
    a, length = br[:-1][keep], length[keep]
    n_sub = np.maximum(1, np.ceil(length / _QUAD_MAX_SUB - 1e-12).astype(np.int64))
    h = np.repeat(length / n_sub, n_sub)
    offs = np.arange(h.size) - np.repeat(np.cumsum(n_sub) - n_sub, n_sub)
    start = np.repeat(a, n_sub) + offs * h
    nodes = start[:, None] + 0.5 * (_GL_X[None, :] + 1.0) * h[:, None]
    weights = 0.5 * _GL_W[None, :] * h[:, None]
    return nodes.ravel(), weights.ravel()


def _weight_fn(loss_type, T, loss_params):
    if loss_type == "sum":
        return lambda t: np.ones_like(t), None
    if loss_type == "sum_weigh_linear":
        return lambda t: 1.0 - t / T, None
    if loss_type == "sum_weigh_exp":
        return lambda t: np.exp(-t / T), None
    if loss_type == "sum_weigh_sigmoid":
        return lambda t: 1.0 / (1.0 + np.exp((t / T - 0.5) / 0.2)), None
    if loss_type == "sum_weigh_input":
        return loss_params["g"], loss_params.get("g_breaks")
    raise ValueError(loss_type)


def _max_readout(r, T):
    """Z_c = max_{t in [0, T]} V_c(t): segment ends (left limits), starts and stationary points."""
    n = r["n_hidden"]
    seg_t = r["seg_t"]
    V0, I0 = r["seg_V"][:, n:], r["seg_I"][:, n:]
    tm = r["tau_m_out"][None, :]
    ts = r["tau_s_out"][None, :]
    length = (np.append(seg_t[1:], T) - seg_t)[:, None]
    V_end = free_v(length, V0, I0, tm, ts)
    s_st = stationary_time(V0, I0, tm, ts)
    ok = np.isfinite(s_st) & (s_st > 0.0) & (s_st < length)
    V_st = np.where(ok, free_v(np.where(ok, s_st, 0.0), V0, I0, tm, ts), -np.inf)
    return np.maximum(0.0, np.max(np.concatenate([V0, V_end, V_st]), axis=0))


def readout(r, T, loss_type, loss_params=None):
    """Read-out Z (C,) of one simulated sample for the sum/sum_weigh_*/max losses:
    Z_c = (1/T) int_0^T g(t) V_c(t) dt, or Z_c = max_t V_c(t)."""
    loss_params = loss_params or {}
    if loss_type == "max":
        return _max_readout(r, T)
    g, g_breaks = _weight_fn(loss_type, T, loss_params)
    breaks = r["seg_t"] if g_breaks is None else np.concatenate([r["seg_t"],
                                                                 np.ravel(g_breaks)])
    t, w = quad_nodes(breaks, T)
    V = r["V_out"](t)
    return (w * np.asarray(g(t), dtype=np.float64)) @ V / T


def first_spike_times(r, T):
    """First spike time of each output in [0, T); T + 1 for silent outputs."""
    return np.array([s[0] if s.size else T + 1.0 for s in r["output_spikes"]])


def sample_loss(r, label, T, loss_type, loss_params=None):
    """Loss of one simulated sample (see exact_loss)."""
    loss_params = loss_params or {}
    if loss_type in INTEGRAL_LOSSES or loss_type == "max":
        Z = readout(r, T, loss_type, loss_params)
        return float(logsumexp(Z) - Z[label])
    if loss_type == "avg_xentropy":
        t, w = quad_nodes(r["seg_t"], T)
        V = r["V_out"](t)
        return float(w @ (logsumexp(V, axis=1) - V[:, label]) / T)
    if loss_type in ("first_spike", "first_spike_exp"):
        tau_0 = float(loss_params.get("tau_0", 1.0))
        alpha = float(loss_params.get("alpha", 5e-5))
        t = first_spike_times(r, T)
        z = -t / tau_0
        t_pen = min(t[label], T)        # silent label output: penalty at t = T
        if loss_type == "first_spike":
            pen = alpha / (1.01 * T - t_pen)
        else:
            pen = alpha * math.expm1(t_pen / float(loss_params.get("tau_1", 100.0)))
        return float(logsumexp(z) - z[label] + pen)
    raise ValueError(f"unknown loss type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")


def exact_loss(net, inputs, labels, T, loss_type, loss_params=None):
    """Batch-mean loss (float).

    Per sample, with CE(Z, y) = -log softmax(Z)_y:
      sum / sum_weigh_*: CE(Z, y), Z_c = (1/T) int_0^T g(t) V_c(t) dt (g = 1, 1 - t/T,
          exp(-t/T), 1/(1 + exp((t/T - 0.5)/0.2)), or loss_params['g'] with optional jump
          points loss_params['g_breaks']);
      max: CE(Z, y), Z_c = max_{[0, T]} V_c(t);
      avg_xentropy: (1/T) int_0^T CE(V(t), y) dt;
      first_spike(_exp): CE(-t/tau_0, y) + P(t_y), t_c = first output spike in [0, T) or T + 1,
          P(t) = alpha/(1.01 T - t) or alpha (exp(t/tau_1) - 1), evaluated at min(t_y, T).
    loss_params keys: 'tau_0' (default 1), 'tau_1' (100), 'alpha' (5e-5), 'g', 'g_breaks'.
    """
    res = simulate_exact(net, inputs, T)
    labels = np.asarray(labels).ravel()
    return float(np.mean([sample_loss(r, int(y), T, loss_type, loss_params)
                          for r, y in zip(res, labels)]))
