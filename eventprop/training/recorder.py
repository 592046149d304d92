"""Recordings of spikes, neuron states and weights in selected trials (REC_SPIKES, REC_NEURONS,
REC_SYNAPSES)."""
import numpy as np

from eventprop.storage import save_npy

# population and projection names used by REC_SPIKES, REC_NEURONS, REC_SYNAPSES and weight files
PROJECTIONS = {"in_to_hid": "w_input_hidden", "hid_to_hidfwd": "w_hidden_hidden_fwd",
               "hid_to_hid": "w_hidden_hidden", "hid_to_out": "w_hidden_output"}
POPULATIONS = ("input", "hidden", "output")


class Recorder:
    """Recordings of selected trials.

    ``spikes``: populations "input", "hidden{l}" ("hidden" = "hidden0") and "output" (the stored
    spikes, as the backward pass sees them); ``neurons``: (population, variable) with variable "V"
    (membrane potential) or "I" (synaptic current) of "hidden{l}" or "output", at the start of
    every step; ``synapses``: (projection, "w") with a projection of ``PROJECTIONS``, after the
    trial. ``filters`` maps "spikes", "neurons", "synapses" to a list of [epoch, trial] pairs
    (empty or missing: every trial). Spike times of batch slot b are offset so that the samples of
    all recorded trials follow one another on one time axis; state recordings have shape
    (samples, steps, neurons)."""

    KINDS = ("spikes", "neurons", "synapses")

    def __init__(self, spikes, neurons, synapses, filters, trial_ms, n_layers=1):
        self.n_layers = n_layers
        self.spikes = [self._population(pop, "REC_SPIKES", input_ok=True) for pop in spikes]
        self.neurons = []
        for pop, var in (tuple(x) for x in neurons):
            self.neurons.append((self._population(pop, "REC_NEURONS"), var))
            if var not in ("V", "I"):
                raise ValueError(f"REC_NEURONS: cannot record {var!r} of {pop!r}; variables: "
                                 "'V', 'I'")
        self.synapses = [tuple(x) for x in synapses]
        for proj, var in self.synapses:
            if var != "w" or proj not in PROJECTIONS:
                raise ValueError(f"REC_SYNAPSES: cannot record {var!r} of {proj!r} "
                                 f"(available: (p, 'w') for p in {list(PROJECTIONS)})")
        self.filters = {k: (None if filters.get(k) is None else {tuple(x) for x in filters[k]})
                        for k in self.KINDS}
        self.trial_ms = trial_ms
        self.spike_t = {pop: [] for pop in self.spikes}
        self.spike_ID = {pop: [] for pop in self.spikes}
        self.vars_n = {f"{var}{pop}": [] for pop, var in self.neurons}
        self.vars_s = {f"{var}{proj}": [] for proj, var in self.synapses}
        self.labels, self.predictions = [], []
        self.slot = 0   # running sample count on the common time axis

    def _population(self, pop, key, input_ok=False):
        valid = (["input"] if input_ok else []) + \
            ["hidden"] + [f"hidden{l}" for l in range(self.n_layers)] + ["output"]
        if pop not in valid:
            raise ValueError(f"{key}: unknown population {pop!r}; valid: {valid}")
        return pop

    @staticmethod
    def _layer(pop):
        """Hidden layer of "hidden{l}" ("hidden": 0)."""
        return int(pop[6:] or 0)

    @property
    def active(self):
        return bool(self.spikes or self.neurons or self.synapses)

    def wants(self, epoch, trial):
        """The kinds of recording wanted in this trial."""
        wanted = (("spikes", self.spikes), ("neurons", self.neurons),
                  ("synapses", self.synapses))
        return {k for k, what in wanted if what and (self.filters[k] is None
                                                     or (epoch, trial) in self.filters[k])}

    def needs_hidden_traces(self, kinds):
        return "neurons" in kinds and any(pop != "output" for pop, _ in self.neurons)

    def record(self, net, result, in_ptr, in_ch, labels, kinds):
        L, N, dt = net.n_layers, net.n_hidden, net.dt
        B = in_ptr.shape[0]
        self.labels.append(np.asarray(labels))
        self.predictions.append(np.asarray(result.predictions))
        for pop in self.spikes if "spikes" in kinds else ():
            for b in range(B):
                t0 = (self.slot + b) * self.trial_ms
                if pop == "input":
                    steps = np.repeat(np.arange(net.n_steps), np.diff(in_ptr[b]))
                    ids = in_ch[in_ptr[b, 0]:in_ptr[b, -1]]
                else:
                    sp_ptr, sp_idx, _ = result.spikes
                    steps = np.repeat(np.arange(net.n_steps), np.diff(sp_ptr[b]))
                    ids = sp_idx[b, :sp_ptr[b, -1]]
                    first = L * N if pop == "output" else self._layer(pop) * N
                    size = net.n_output if pop == "output" else N
                    sel = (ids >= first) & (ids < first + size)
                    steps, ids = steps[sel], ids[sel] - first
                self.spike_t[pop].append(t0 + steps * dt)
                self.spike_ID[pop].append(ids)
        for pop, var in self.neurons if "neurons" in kinds else ():
            if pop == "output":
                trace = result.V_out[:, :-1] if var == "V" else result.I_out
            else:
                trace = (result.V_hidden if var == "V" else result.I_hidden)[:, :, self._layer(pop)]
            self.vars_n[f"{var}{pop}"].append(np.array(trace))
        for proj, var in self.synapses if "synapses" in kinds else ():
            self.vars_s[f"{var}{proj}"].append(net.params[PROJECTIONS[proj]].copy())
        self.slot += B

    def results(self):
        """(spike_t, spike_ID, rec_vars_n, rec_vars_s) as the reference returns them."""
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
        spike_t = {pop: cat(v) for pop, v in self.spike_t.items()}
        spike_ID = {pop: cat(v).astype(np.int64) for pop, v in self.spike_ID.items()}
        vars_n = {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.vars_n.items()}
        vars_s = {k: np.stack(v) if v else np.zeros(0) for k, v in self.vars_s.items()}
        return spike_t, spike_ID, vars_n, vars_s

    def save(self, out_dir, prefix):
        spike_t, spike_ID, vars_n, vars_s = self.results()
        for pop in spike_t:
            save_npy(f"{out_dir}/{prefix}{pop}_spike_t.npy", spike_t[pop])
            save_npy(f"{out_dir}/{prefix}{pop}_spike_ID.npy", spike_ID[pop])
        for k, v in {**vars_n, **vars_s}.items():
            save_npy(f"{out_dir}/{prefix}{k}.npy", v)
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)
        save_npy(f"{out_dir}/{prefix}rec_labels.npy", cat(self.labels))
        save_npy(f"{out_dir}/{prefix}rec_predictions.npy", cat(self.predictions))
