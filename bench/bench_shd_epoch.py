"""Time one full SHD training epoch (data pipeline + engine) against the engine alone.

Data: a synthetic set of SHD's size and spike statistics, built in memory (no HDF5 file): 8156
samples of 700 channels on 1400 steps of 1 ms, about 8000 spikes per sample after binning (an
utterance of 0.4-1 s starting in the first 150 ms, spikes concentrated around three frequency
bands per sample plus a uniform background), labels 0..19, speakers 0..9.

Per configuration (NUM_HIDDEN 256 / 1024, RECURRENT, B = 32, sum_weigh_exp, DT 1 ms, TRIAL_MS 1400,
N_VALIDATE 512, EVALUATION "random", MODEL_SEED 1) and augmentation:

* engine-only, unaugmented: ``Trainer.run_epoch`` (learning, input dropout 0.1, the learning-rate
  ease-in) over N_TRAIN samples of the prebuilt, unaugmented training split (7644 samples; with
  "blend", N_TRAIN = 15288 presents every sample twice), no ``epoch_data``; its network is the
  one the full run starts from.
* engine-only, same samples (augmented configurations only; without augmentation the above is
  already the same work): ``run_epoch`` over the training set and order of epoch 0 that
  ``epoch_data`` returns, built before the timer starts: exactly the samples, order, dropout and
  learning of the full run's training part.
* full: ``SHD_model.train(p)`` with N_EPOCH = 1 through the public path (split, network,
  ``epoch_data``, the training part, the validation part, result files, checkpoint), minus the
  validation part (512 samples, timed by the run itself), so that both sides put N_TRAIN samples
  through the engine.
* overhead = full / engine-only (same samples) - 1, the cost of the data pipeline and the
  bookkeeping; also against the unaugmented engine-only time, and ``epoch_data`` alone, the
  training part inside the full run and the split (once per run, not per epoch).

    python bench/bench_shd_epoch.py                  # all four configurations
    python bench/bench_shd_epoch.py --quick          # 1/8 of the samples, to try things out
    python bench/bench_shd_epoch.py --hidden 256 --aug default --write
    python bench/bench_shd_epoch.py --paper          # the paper's configuration (paper_SHD)

``--paper``: the ``paper_SHD`` preset (1024 recurrent hidden, a delay line of 10 copies 30 ms
apart, so 7,700 inputs, shift and blend augmentation, trials of 1000 ms, N_TRAIN twice the
training part) on the synthetic data, EVALUATION "random"; engine-only on the same samples (the
delay line is built by ``epoch_data``) and the full epoch.
"""
import argparse
import datetime
import json
import os
import resource
import tempfile
import time

import numba
import numpy as np

from bench_engine import cpu_name, insert_row   # bench/, beside this file
from eventprop.backends import select_backend
from eventprop.data.spikes import SpikeData
from eventprop.simulators.shd import PRESETS, SHD_model, validate
from eventprop.training.experiment import STREAM_DROPOUT, epoch_rng, training_order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

N_SAMPLES, N_VALIDATE = 8156, 512
N_STEPS, N_CHANNELS, N_CLASSES, N_SPEAKERS = 1400, 700, 20, 10
AUGMENTATIONS = {
    "default": {"NORMALISE_SPIKE_NUMBER": False},
    "shift+blend": {"random_shift": 40, "blend": [0.5, 0.5]},
}
ROWS_MARKER = "<!-- shd epoch rows: bench/bench_shd_epoch.py --write adds rows above -->\n"


# --- synthetic data ------------------------------------------------------------------------------
def synthetic_shd(n_samples, seed=0, mean_spikes=8300, chunk=512):
    """(SpikeData, speakers) of n_samples SHD-like samples (see the module docstring)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n_samples)
    speakers = rng.integers(0, N_SPEAKERS, n_samples)
    parts = []
    for start in range(0, n_samples, chunk):
        n = min(chunk, n_samples - start)
        draws = np.clip(rng.normal(mean_spikes, 0.3 * mean_spikes, n), 1000, 4 * mean_spikes)
        draws = draws.astype(np.int64)
        sample = np.repeat(np.arange(n), draws)
        onset = rng.uniform(0, 150, n)[sample]
        length = rng.uniform(400, 1000, n)[sample]
        steps = onset + length * rng.beta(2.0, 2.5, len(sample))
        # three frequency bands per sample (class-dependent centres, jittered) + a background
        centres = (np.array([150.0, 350.0, 550.0])[None, :] +
                   8.0 * (labels[start:start + n, None] - 10) +
                   rng.normal(0, 25, (n, 3)))
        band = rng.integers(0, 4, len(sample))
        width = rng.uniform(20, 60, (n, 3))
        in_band = band < 3
        b = np.minimum(band, 2)
        spread = width[sample, b] * rng.standard_normal(len(sample))
        channels = np.where(in_band, centres[sample, b] + spread,
                            rng.uniform(0, N_CHANNELS, len(sample)))
        parts.append(SpikeData.from_flat(sample, steps.astype(np.int64),
                                         np.floor(channels).astype(np.int64),
                                         labels[start:start + n], N_STEPS, N_CHANNELS))
    offsets = np.concatenate([[0]] + [d.offsets[1:] + base for d, base in
                                      zip(parts, np.cumsum([0] + [len(d.steps) for d in parts]))])
    data = SpikeData(np.concatenate([d.steps for d in parts]),
                     np.concatenate([d.channels for d in parts]), offsets, labels, N_STEPS,
                     N_CHANNELS)
    return data, speakers


def make_model(data, speakers):
    """An SHD_model on in-memory data: the constructor (which reads the HDF5 files) is skipped
    and the loader of ``train`` is replaced by a no-op on this instance only."""
    model = SHD_model.__new__(SHD_model)
    model.train_data, model.train_speakers = data, speakers
    model.test_data, model.valid_data = data.subset(np.arange(0)), None
    model.n_classes = N_CLASSES
    model._data_key = "synthetic"
    model.manual_GPU = None
    model._load_data = lambda p: None
    model._read_labels = lambda p: None
    model.files, model.sizes = {"train": "synthetic"}, {"train": len(data)}
    model.speakers_of_train = speakers
    return model


def params(hidden, aug, n_train, n_validate, out_dir):
    return validate({"NUM_HIDDEN": hidden, "RECURRENT": True, "N_BATCH": 32,
                     "LOSS_TYPE": "sum_weigh_exp", "DT_MS": 1.0, "TRIAL_MS": 1400.0,
                     "N_EPOCH": 1, "N_TRAIN": n_train, "N_VALIDATE": n_validate,
                     "EVALUATION": "random", "AUGMENTATION": dict(AUGMENTATIONS[aug]),
                     "MODEL_SEED": 1, "TRAIN_DATA_SEED": 123, "PROGRESS": False,
                     "OUT_DIR": out_dir, "NAME": f"bench_{hidden}_{aug.replace('+', '_')}"})


def paper_params(n_train, n_validate, out_dir):
    """The paper_SHD preset with this benchmark's data sizes, one epoch, random evaluation."""
    return validate(dict(PRESETS["paper_SHD"], N_EPOCH=1, N_TRAIN=n_train,
                         N_VALIDATE=n_validate, EVALUATION="random", PROGRESS=False,
                         OUT_DIR=out_dir, NAME="bench_paper_SHD"))


def machine():
    """What ran the engine: the GPU (BACKEND "auto" picks it when one is usable) or the CPU's
    cores and numba threads."""
    backend = select_backend("auto")
    host = f"{cpu_name()}, {os.cpu_count()} cores, {numba.get_num_threads()} threads"
    if backend.name == "cuda":
        from numba import cuda
        name = cuda.get_current_device().name
        return f"{name.decode() if isinstance(name, bytes) else name} (GPU backend); host {host}"
    return host


# --- the two measurements ------------------------------------------------------------------------
def engine_only(model, p, same_samples=False):
    """Seconds of ``Trainer.run_epoch`` over N_TRAIN training samples, set up as Experiment.run
    sets up epoch 0, with (seconds, samples, hidden spikes per sample) of the run. The data are
    built before the timer starts: the unaugmented split (each sample presented as often as
    needed to make N_TRAIN), or with ``same_samples`` the training set and order of epoch 0 from
    ``epoch_data``."""
    train, evaluation = model.split(p)
    trainer = model.make_network(p)
    schedule = model.make_schedule(p)
    if same_samples:
        train, _, order = model.epoch_data(p, 0, train, evaluation)
    else:
        order = np.concatenate([training_order(p, len(train), e)
                                for e in range(-(-p["N_TRAIN"] // len(train)))])[:p["N_TRAIN"]]
    p_in, p_hid = model.dropout(p)
    t0 = time.perf_counter()
    stats = trainer.run_epoch(
        train, order, True, lambda: schedule.rate, epoch=0, p_drop_input=p_in,
        p_drop_hidden=p_hid, noise=p["HIDDEN_NOISE"],
        rng=epoch_rng(p["TRAIN_DATA_SEED"], 0, STREAM_DROPOUT), seed=p["TRAIN_DATA_SEED"],
        progress=False, on_trial=lambda trial, s: schedule.after_trial())
    seconds = time.perf_counter() - t0
    return seconds, stats.n_samples, float(np.mean(np.concatenate(stats.hidden_per_sample)))


def full_epoch(model, p):
    """Seconds of ``model.train(p)``, with those of its split, epoch_data and both parts."""
    timed = {"split": 0.0, "epoch_data": 0.0}

    def wrap(name):
        method = getattr(model, name)

        def timed_method(*args, **kwargs):
            t0 = time.perf_counter()
            out = method(*args, **kwargs)
            timed[name] += time.perf_counter() - t0
            return out
        setattr(model, name, timed_method)
        return method

    originals = {name: wrap(name) for name in ("split", "epoch_data")}
    try:
        t0 = time.perf_counter()
        model.train(p)
        wall = time.perf_counter() - t0
    finally:
        for name, method in originals.items():
            setattr(model, name, method)
    with open(os.path.join(p["OUT_DIR"], p["NAME"] + "_log.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    return dict(timed, wall=wall, train=record["train_seconds"],
                validation=record.get("validation_seconds", 0.0),
                hidden=record["train_hidden_spikes_per_sample"])


def warm_up(data, speakers, hidden, out_dir, paper=False):
    """Compile (or load from numba's cache) every kernel of both paths on a few samples."""
    small = data.subset(np.arange(96))
    model = make_model(small, speakers[:96])
    if paper:
        p = paper_params(128, 32, out_dir)
        engine_only(model, p, same_samples=True)
        full_epoch(model, p)
        return
    for aug in AUGMENTATIONS:
        p = params(hidden, aug, 64 * (2 if "blend" in AUGMENTATIONS[aug] else 1), 32, out_dir)
        engine_only(model, p)
        engine_only(model, p, same_samples=True)
        full_epoch(model, p)


# --- report --------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--aug", nargs="+", choices=list(AUGMENTATIONS), default=list(AUGMENTATIONS))
    ap.add_argument("--quick", action="store_true", help="1/8 of the samples (1019, 64 validation)")
    ap.add_argument("--paper", action="store_true",
                    help="the paper_SHD preset (1024 recurrent, delay line, shift + blend)")
    ap.add_argument("--write", action="store_true", help="add the results to BENCHMARKS.md")
    args = ap.parse_args()

    n_samples, n_validate = (N_SAMPLES // 8, N_VALIDATE // 8) if args.quick else \
        (N_SAMPLES, N_VALIDATE)
    t0 = time.perf_counter()
    data, speakers = synthetic_shd(n_samples)
    counts = data.spike_counts()
    print(f"synthetic SHD: {len(data)} samples, {counts.mean():.0f} spikes per sample "
          f"(5-95 %: {np.percentile(counts, 5):.0f}-{np.percentile(counts, 95):.0f}), "
          f"{len(data.steps) / 1e6:.1f} M spikes, built in {time.perf_counter() - t0:.1f} s")
    n_plain = n_samples - n_validate
    rows = []
    if args.paper:
        args.hidden, args.aug = [PRESETS["paper_SHD"]["NUM_HIDDEN"]], ["paper_SHD"]
        n_steps = int(PRESETS["paper_SHD"]["TRIAL_MS"] / PRESETS["paper_SHD"]["DT_MS"])
        data = SpikeData.from_flat(data.sample_index(), data.steps, data.channels, data.labels,
                                   n_steps, N_CHANNELS)      # the trials of the preset
    with tempfile.TemporaryDirectory() as out_dir:
        for hidden in args.hidden:
            t0 = time.perf_counter()
            warm_up(data, speakers, hidden, out_dir, args.paper)
            print(f"{hidden} hidden: warm-up (compile / cache load) "
                  f"{time.perf_counter() - t0:.1f} s")
            for aug in args.aug:
                if args.paper:
                    p = paper_params(2 * n_plain, n_validate, out_dir)
                    augmented, n_train = True, p["N_TRAIN"]
                else:
                    augmented = any(k != "NORMALISE_SPIKE_NUMBER" for k in AUGMENTATIONS[aug])
                    n_train = n_plain * (2 if "blend" in AUGMENTATIONS[aug] else 1)
                    p = params(hidden, aug, n_train, n_validate, out_dir)
                model = make_model(data, speakers)
                same_s, n_engine, same_hidden = engine_only(model, p, True) if augmented else \
                    (None, None, None)
                plain_s, n_engine, plain_hidden = (same_s, n_engine, same_hidden) \
                    if args.paper else engine_only(model, p)
                if not augmented:
                    same_s, same_hidden = plain_s, plain_hidden
                full = full_epoch(model, p)
                full_s = full["wall"] - full["validation"]
                overhead = 100.0 * (full_s / same_s - 1.0)
                overhead_plain = 100.0 * (full_s / plain_s - 1.0)
                label = ("paper_SHD: delay line 10 x 30 ms (7700 inputs), "
                         f"{json.dumps(p['AUGMENTATION'])}, trials of {p['TRIAL_MS']:.0f} ms"
                         if args.paper else json.dumps(AUGMENTATIONS[aug]))
                config = (f"{hidden} LIF recurrent, {label}, "
                          f"N_TRAIN {n_train}")
                same = (f"engine-only on the same (augmented) samples {same_s:.2f} s, "
                        f"{same_hidden:.0f} hidden spikes/sample" if augmented else
                        "(no augmentation: the same samples as the full run)")
                plain = ("" if args.paper else
                         f"  engine-only (run_epoch on {n_engine} prebuilt unaugmented samples) "
                         f"{plain_s:.2f} s, {plain_hidden:.0f} hidden spikes/sample\n")
                print(f"{config}:\n{plain}"
                      f"  {same}\n"
                      f"  full (model.train, 1 epoch, {full['wall']:.2f} s, minus validation of "
                      f"{n_validate} samples {full['validation']:.2f} s) {full_s:.2f} s\n"
                      f"    of which split {full['split']:.2f} s, epoch_data "
                      f"{full['epoch_data']:.2f} s, training part {full['train']:.2f} s "
                      f"({full['hidden']:.0f} hidden spikes/sample), rest "
                      f"{full_s - full['split'] - full['epoch_data'] - full['train']:.2f} s\n"
                      f"  overhead of the full epoch: {overhead:+.1f} % over engine-only on the "
                      f"same samples, {overhead_plain:+.1f} % over engine-only unaugmented")
                rows.append(f"| {datetime.date.today()} | {machine()} | {hidden} recurrent | "
                            f"`{label}` | {n_train} | {plain_s:.1f} | "
                            f"{same_s:.1f} | {full_s:.1f} | {overhead:+.1f} % | "
                            f"{overhead_plain:+.1f} % | {full['epoch_data']:.2f} | "
                            f"{full['split']:.2f} | {full['validation']:.1f} |\n")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.write:
        if args.quick:
            raise SystemExit("--quick results are not written to BENCHMARKS.md")
        for row in rows:
            insert_row(os.path.join(ROOT, "BENCHMARKS.md"), row, ROWS_MARKER)


if __name__ == "__main__":
    main()
