"""The SHD / SSC simulator on small official-layout files: parameter checks, data errors, splits,
evaluation modes, training, files, checkpoints and resume, recordings, cross-validation."""
import json
import os

import numpy as np
import pytest

from eventprop import storage
from official_files import write_dataset, write_h5
from eventprop.simulators.shd import SHD_model, reduce_classes
from eventprop.simulators.shd import p as default_p

N_CLASSES = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, "SHD", n_train=120, n_test=40, n_classes=N_CLASSES, n_speakers=4)
    write_dataset(root, "SSC", n_train=80, n_test=40, n_valid=24, n_classes=N_CLASSES, seed=1)
    return str(root)


def small(data_dir, out, **kw):
    p = dict(default_p)
    p.update(DATA_DIR=data_dir, OUT_DIR=str(out), NAME="shd", TRIAL_MS=100.0, NUM_HIDDEN=32,
             N_BATCH=16, N_TRAIN=96, N_VALIDATE=24, N_EPOCH=2, MODEL_SEED=1, PROGRESS=False,
             INPUT_HIDDEN_MEAN=0.1, INPUT_HIDDEN_STD=0.05, ETA=5e-3, LR_EASE_IN_FACTOR=2.0,
             PDROP_INPUT=0.0)
    p.update(kw)
    return p


# --- parameters and data errors ---------------------------------------------------------------

def test_unknown_key_is_an_error_with_suggestion(data_dir, tmp_path):
    with pytest.raises(KeyError, match="NUM_HIDEN.*NUM_HIDDEN"):
        SHD_model(small(data_dir, tmp_path, NUM_HIDEN=10))


@pytest.mark.parametrize("key,value", [
    ("EVALUATION", "speakers"), ("LOSS_TYPE", "sum_weight_exp"), ("N_VALIDATE", -1),
    ("HIDDEN_NEURON_TYPE", "LIF2"), ("AUGMENTATION", {"random_shfit": 40}),
    ("AUGMENTATION", {"blend": [0.5, 1.5]}), ("AUGMENTATION", {"random_dilate": [1.2, 0.8]}),
    ("REDUCED_CLASSES", [0, 0]), ("REDUCED_CLASSES", [3, 25]), ("SPEAKER_LEFT", []),
    ("B_INIT", 0.5), ("CHECKPOINT_BEST", "test"), ("DATA_SET", "MNIST"), ("PDROP_INPUT", 1.0)])
def test_invalid_values_name_the_key(data_dir, tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        SHD_model(small(data_dir, tmp_path, **{key: value}))


def test_evaluation_mode_must_suit_the_data_set(data_dir, tmp_path):
    with pytest.raises(ValueError, match="EVALUATION.*SSC has no speaker"):
        SHD_model(small(data_dir, tmp_path, DATA_SET="SSC", EVALUATION="speaker"))
    with pytest.raises(ValueError, match="EVALUATION.*SHD has no validation"):
        SHD_model(small(data_dir, tmp_path, EVALUATION="validation_set"))


def test_missing_file_names_it_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shd_train\.h5.*zenkelab"):
        SHD_model(small(str(tmp_path / "nowhere"), tmp_path))


def test_malformed_file_names_it(tmp_path):
    folder = tmp_path / "SHD"
    folder.mkdir()
    (folder / "shd_train.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="shd_train.h5"):
        SHD_model(small(str(tmp_path), tmp_path))
    write_h5(folder / "shd_train.h5", [[0.01]], [[3]], [0], skip=("units",))
    with pytest.raises(ValueError, match=r"shd_train\.h5.*/spikes/units"):
        SHD_model(small(str(tmp_path), tmp_path))


def test_speaker_index_out_of_range_is_named(data_dir, tmp_path):
    p = small(data_dir, tmp_path, EVALUATION="speaker", SPEAKER_LEFT=[7])
    with pytest.raises(ValueError, match="SPEAKER_LEFT.*4 speakers"):
        SHD_model(p).train(p)


# --- data, splits, evaluation modes -----------------------------------------------------------

def test_loading_binning_and_cache(data_dir, tmp_path):
    model = SHD_model(small(data_dir, tmp_path))
    data = model.train_data
    assert len(data) == 120 and data.n_channels == 700 and data.n_steps == 100
    assert model.n_classes == 20 and set(data.labels) == set(range(N_CLASSES))
    assert os.listdir(os.path.join(data_dir, "SHD", "cache"))
    for i in range(len(data)):                     # at most one spike per (channel, step)
        steps, channels = data.sample(i)
        assert len(set(zip(steps.tolist(), channels.tolist()))) == len(steps)
    coarse = SHD_model(small(data_dir, tmp_path, DT_MS=2.0))
    assert coarse.train_data.n_steps == 50
    assert np.all(coarse.train_data.spike_counts() <= data.spike_counts())


def samples(data):
    """Each sample's spikes as a hashable key (to find samples again in another set)."""
    return [tuple(np.concatenate(data.sample(i)).tolist()) for i in range(len(data))]


def test_random_split_is_disjoint_and_sized(data_dir, tmp_path):
    p = small(data_dir, tmp_path)
    model = SHD_model(p)
    train, evaluation = model.split(p)
    assert len(train) == 96 and len(evaluation) == 24
    assert not set(samples(train)) & set(samples(evaluation))
    again, _ = model.split(p)
    assert samples(again) == samples(train)              # TRAIN_DATA_SEED fixes the split
    train0, evaluation0 = model.split(dict(p, N_VALIDATE=0))
    assert len(train0) == 96 and evaluation0 is None


def test_speaker_split_leaves_one_speaker_out(data_dir, tmp_path):
    p = small(data_dir, tmp_path, EVALUATION="speaker", SPEAKER_LEFT=[2], N_TRAIN=1000)
    model = SHD_model(p)
    train, evaluation = model.split(p)
    ids = np.unique(model.train_speakers)
    left = model.train_speakers == ids[2]
    assert samples(evaluation) == samples(model.train_data.subset(np.flatnonzero(left)))
    assert sorted(samples(train)) == sorted(samples(model.train_data.subset(
        np.flatnonzero(~left))))


def test_ssc_uses_the_official_validation_file(data_dir, tmp_path):
    p = small(data_dir, tmp_path, DATA_SET="SSC", EVALUATION="validation_set", N_TRAIN=60)
    model = SHD_model(p)
    assert model.n_classes == 35
    train, evaluation = model.split(p)
    assert len(train) == 60 and evaluation is model.valid_data and len(evaluation) == 24
    *_, train_acc, eval_acc = model.train(dict(p, N_EPOCH=1))
    log = storage.load_epoch_log(str(tmp_path / "shd_log.jsonl"))
    assert log[-1]["validation_acc"] == eval_acc


def test_dataset_alias_selects_ssc(data_dir, tmp_path):
    model = SHD_model(small(data_dir, tmp_path, DATASET="SSC", EVALUATION="validation_set"))
    assert model.n_classes == 35 and model.valid_data is not None


def test_reduced_classes_relabels_and_sizes_the_output(data_dir, tmp_path):
    p = small(data_dir, tmp_path, REDUCED_CLASSES=[3, 1])
    model = SHD_model(p)
    assert model.n_classes == 2 and set(model.train_data.labels) == {0, 1}
    full = SHD_model(small(data_dir, tmp_path))
    kept = np.flatnonzero(np.isin(full.train_data.labels, [3, 1]))
    assert np.array_equal(model.train_data.labels, (full.train_data.labels[kept] == 1) * 1)
    model.train(dict(p, N_EPOCH=1))
    assert np.load(tmp_path / "shd_w_hidden_output_last.npy").shape == (32, 2)
    data, speakers = reduce_classes(full.train_data, full.train_speakers, None)
    assert data is full.train_data


# --- training and its files -------------------------------------------------------------------

def test_training_improves_accuracy_on_separable_classes(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=4)
    model = SHD_model(p)
    before = model.test(p)[-1]
    *_, train_acc, test_acc = model.train_test(p)
    assert before < 0.5 and test_acc >= 0.9 and train_acc >= 0.8
    results = np.loadtxt(tmp_path / "shd_results.txt")
    assert results.shape == (1 + 4, 6)                   # test() wrote a line first
    assert results[-1, 3] == pytest.approx(test_acc, abs=1e-6)
    with open(tmp_path / "shd.json") as f:
        assert json.load(f)["N_EPOCH"] == 4


@pytest.mark.parametrize("mode", ["random", "speaker"])
def test_every_evaluation_mode_trains(data_dir, tmp_path, mode):
    p = small(data_dir, tmp_path, EVALUATION=mode, N_EPOCH=3)
    *_, train_acc, eval_acc = SHD_model(p).train(p)
    assert train_acc > 0.5 and eval_acc > 0.5
    log = storage.load_epoch_log(str(tmp_path / "shd_log.jsonl"))
    assert [r["epoch"] for r in log] == [0, 1, 2] and "validation_acc" in log[0]


def test_ease_in_multiplies_the_rate_after_every_trial(data_dir, tmp_path):
    """Rate after epoch 0 = ETA / 1000 * factor^(training + evaluation trials), capped."""
    p = small(data_dir, tmp_path, N_EPOCH=1, ETA=1e-3, LR_EASE_IN_FACTOR=1.05)
    SHD_model(p).train(p)
    log = storage.load_epoch_log(str(tmp_path / "shd_log.jsonl"))
    n_trials = 96 // 16 + -(-24 // 16)
    assert log[0]["eta"] == pytest.approx(1e-6 * 1.05 ** n_trials)


def test_files_of_a_run(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=2, COLLECT_CONFUSION=True, REC_PREDICTIONS=True,
              DEBUG_HIDDEN_N=True, CHECKPOINT_BEST="validation", HIDDEN_NEURON_TYPE="hetLIF",
              OUTPUT_NEURON_TYPE="hetLI", W_OUTPUT_EPOCH_TRIAL=[[1, 2]],
              TAU_OUTPUT_EPOCH_TRIAL=[[0, 1]], RECURRENT=True, N_HID_LAYER=2)
    SHD_model(p).train(p)
    conf = np.load(tmp_path / "shd_confusion_train.npy")
    assert conf.shape == (2, 20, 20) and conf[-1].sum() == 96
    assert np.load(tmp_path / "shd_confusion_eval.npy")[-1].sum() == 24
    pred, lab = np.load(tmp_path / "shd_predictions_train.npy"), \
        np.load(tmp_path / "shd_labels_train.npy")
    assert pred.shape == lab.shape == (2, 96)
    assert np.array_equal(np.load(tmp_path / "shd_labels_eval.npy")[0],
                          np.load(tmp_path / "shd_labels_eval.npy")[1])   # fixed eval order
    results = np.loadtxt(tmp_path / "shd_results.txt")
    assert results.shape == (2, 6 + 2 * 9)               # 9 DEBUG_HIDDEN_N columns per layer
    for stem in ("w_input_hidden", "w_hidden_output", "w_hidden0_hidden1", "w_hidden0_hidden0",
                 "w_hidden1_hidden1", "taum_hidden0", "tausyn_hidden1", "taum_output",
                 "tausyn_output"):
        assert (tmp_path / f"shd_{stem}_last.npy").exists(), stem
        assert (tmp_path / f"shd_{stem}_best.npy").exists(), stem
    assert (tmp_path / "shd_best.txt").read_text().split()[0] in ("0", "1")
    assert (tmp_path / "shd_w_hidden0_hidden1_e1_t2.npy").exists()
    assert (tmp_path / "shd_tau_m_hidden1_e0_t1.npy").exists()
    assert (tmp_path / "shd_tau_syn_output_e0_t1.npy").exists()
    assert not (tmp_path / "shd_tau_m_output_e1_t2.npy").exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


def test_recordings_of_hidden_layers_and_evaluation_trials(data_dir, tmp_path):
    """Trial numbers continue from the training trials (6) into the evaluation trials."""
    p = small(data_dir, tmp_path, N_EPOCH=1, N_HID_LAYER=2, HIDDEN_HIDDENFWD_MEAN=0.3,
              REC_SPIKES=["input", "hidden1", "output"], REC_NEURONS=[("hidden0", "V"),
                                                                      ("output", "I")],
              REC_SYNAPSES=[("hid_to_hidfwd", "w")], REC_SPIKES_EPOCH_TRIAL=[[0, 6]],
              REC_NEURONS_EPOCH_TRIAL=[[0, 0]], REC_SYNAPSES_EPOCH_TRIAL=[[0, 1], [0, 7]])
    spike_t, spike_ID, vars_n, vars_s, *_ = SHD_model(p).train(p)
    assert vars_n["Vhidden0"].shape == (16, 100, 32)
    assert vars_n["Ioutput"].shape == (16, 100, 20)
    assert vars_s["whid_to_hidfwd"].shape == (2, 1, 32, 32)
    assert spike_ID["hidden1"].max() < 32 and len(spike_t["input"]) > 0
    assert spike_ID["output"].size == 0                  # LI outputs do not spike
    assert (tmp_path / "shd_Vhidden0.npy").exists()
    assert len(np.load(tmp_path / "shd_rec_labels.npy")) == 16 + 16 + 16 + 8


def test_spike_overflow_is_reported(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, N_MAX_SPIKE=1, INPUT_HIDDEN_MEAN=0.3)
    with pytest.warns(RuntimeWarning, match="N_MAX_SPIKE"):
        SHD_model(p).train(p)


# --- checkpoints and resume -------------------------------------------------------------------

RESUME = dict(N_EPOCH=4, AUGMENTATION={"NORMALISE_SPIKE_NUMBER": True, "random_shift": 20,
                                       "ID_jitter": 2.0, "blend": [0.5, 0.5]},
              N_TRAIN=110, PDROP_INPUT=0.1, PDROP_HIDDEN=0.05, REWIRE_SILENT=True,
              REWIRE_LIFT=0.001, TRAIN_TAU=True, MIN_EPOCH_ETA_FIXED=1, RECURRENT=True,
              BALANCE_TRAIN_CLASSES=True, HIDDEN_NOISE=0.01, LR_EASE_IN_FACTOR=1.3)


def test_resume_continues_like_an_uninterrupted_run(data_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = small(data_dir, a, **RESUME)
    model = SHD_model(p)
    model.train(p)
    model.train(small(data_dir, b, **dict(RESUME, N_EPOCH=2)))
    model.train(small(data_dir, b, **dict(RESUME, LOAD_LAST=True)))
    for f in ("shd_w_input_hidden_last.npy", "shd_w_hidden0_hidden0_last.npy",
              "shd_taum_hidden0_last.npy", "shd_w_hidden_output_last.npy"):
        assert np.array_equal(np.load(a / f), np.load(b / f)), f
    ra, rb = np.loadtxt(a / "shd_results.txt"), np.loadtxt(b / "shd_results.txt")
    assert np.array_equal(ra[:, :5], rb[:, :5])
    la = storage.load_epoch_log(str(a / "shd_log.jsonl"))
    lb = storage.load_epoch_log(str(b / "shd_log.jsonl"))
    assert [r["eta"] for r in la] == [r["eta"] for r in lb]


def test_load_best_for_test_and_checkpoint_name(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=3, CHECKPOINT_BEST="training", NAME="run1")
    model = SHD_model(p)
    model.train(p)
    best_epoch = int((tmp_path / "run1_best.txt").read_text().split()[0])
    results = np.loadtxt(tmp_path / "run1_results.txt")
    assert results[best_epoch, 1] == results[:, 1].max()
    q = small(data_dir, tmp_path, NAME="eval1", LOAD_BEST=True, CHECKPOINT_NAME="run1")
    acc_best = model.test(q)[-1]
    acc_again = model.test(q)[-1]
    assert acc_best == acc_again
    with pytest.raises(FileNotFoundError, match="nothere_checkpoint_last.npz"):
        model.test(small(data_dir, tmp_path, LOAD_LAST=True, CHECKPOINT_NAME="nothere"))


def test_weights_of_the_original_load_with_a_fresh_optimiser(data_dir, tmp_path):
    """Only .npy weight files (as the original writes them, flat): loaded, with a warning."""
    p = small(data_dir, tmp_path, N_EPOCH=1, NAME="orig", ETA=0.0)
    model = SHD_model(p)
    rng = np.random.default_rng(0)
    w_in = rng.normal(0.1, 0.05, 700 * 32).astype(np.float32)
    w_out = rng.normal(0.0, 0.3, 32 * 20).astype(np.float32)
    np.save(tmp_path / "orig_w_input_hidden_last.npy", w_in)          # flat, as GeNN's views
    np.save(tmp_path / "orig_w_hidden_output_last.npy", w_out)
    with pytest.warns(RuntimeWarning, match="optimiser"):
        model.train(dict(p, LOAD_LAST=True))
    assert np.array_equal(np.load(tmp_path / "orig_w_input_hidden_last.npy"),
                          w_in.reshape(700, 32))             # ETA 0: unchanged, now 2-D


# --- other features ---------------------------------------------------------------------------

def test_delay_line_and_model_variants_run(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, N_INPUT_DELAY=2, INPUT_DELAY=10.0,
              HIDDEN_NEURON_TYPE="ALIF", REG_TYPE="simple", LOSS_TYPE="max",
              TRAIN_TAU_OUTPUT=True, TRAIN_W=False)
    model = SHD_model(p)
    model.train(p)
    w = np.load(tmp_path / "shd_w_input_hidden_last.npy")
    assert w.shape == (3 * 700, 32)
    init = model.make_network(p).net.params["w_input_hidden"]
    assert np.array_equal(w, init)                       # TRAIN_W False: input weights fixed
    assert (tmp_path / "shd_taum_output_last.npy").exists()


@pytest.mark.parametrize("loss", ["sum", "sum_weigh_linear", "sum_weigh_sigmoid",
                                  "sum_weigh_input", "avg_xentropy", "first_spike",
                                  "first_spike_exp"])
def test_every_loss_runs(data_dir, tmp_path, loss):
    p = small(data_dir, tmp_path, N_EPOCH=1, LOSS_TYPE=loss, N_TRAIN=32, N_VALIDATE=16)
    *_, train_acc, eval_acc = SHD_model(p).train(p)
    assert 0.0 <= train_acc <= 1.0 and 0.0 <= eval_acc <= 1.0


def test_cross_validate_leaves_each_speaker_out(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, SPEAKER_LEFT=[0, 3])
    model = SHD_model(p)
    accuracies, seconds = model.cross_validate_SHD(p)
    assert len(accuracies) == 2 and len(seconds) == 2
    for i in (0, 3):
        assert (tmp_path / f"shd_fold{i}_results.txt").exists()
        with open(tmp_path / f"shd_fold{i}.json") as f:
            saved = json.load(f)
        assert saved["SPEAKER_LEFT"] == [i] and saved["EVALUATION"] == "speaker"
    with pytest.raises(ValueError, match="N_VALIDATE"):
        model.cross_validate(dict(p, N_VALIDATE=0))


def test_parameters_are_json_serialisable():
    json.dumps(default_p)


def test_a_typo_in_the_module_dictionary_itself_is_caught(data_dir, tmp_path, monkeypatch):
    """The documented usage edits simulator_SHD.p in place; a misspelt key added there must
    still be an error."""
    from eventprop.simulators import shd as simulator_SHD
    monkeypatch.setitem(simulator_SHD.p, "NUM_HIDEN", 10)
    with pytest.raises(KeyError, match="NUM_HIDEN"):
        SHD_model(dict(simulator_SHD.p, DATA_DIR=data_dir))


def test_presets_are_valid_parameter_sets(data_dir):
    from eventprop.simulators.shd import PRESETS, validate
    for name in ("paper_SHD", "paper_SSC"):
        full = validate(dict(PRESETS[name]))
        assert full["NUM_HIDDEN"] == 1024 and full["N_INPUT_DELAY"] == 10, name
    shd = validate(dict(PRESETS["delays_SHD"]))
    assert (shd["NUM_HIDDEN"], shd["N_HID_LAYER"], shd["RECURRENT"], shd["N_INPUT_DELAY"]) == \
        (512, 1, True, 0)
    assert shd["TRAIN_DELAYS"] and set(shd["DELAYS"]) == {"input_hidden", "hidden_hidden"}
    ssc = validate(dict(PRESETS["delays_SSC"]))
    assert (ssc["NUM_HIDDEN"], ssc["N_HID_LAYER"], ssc["RECURRENT"]) == (1024, 2, False)
    assert set(ssc["DELAYS"]) == {"input_hidden", "hidden_hiddenfwd"}


def test_train_SHD_script_with_the_delays_preset(data_dir, tmp_path):
    """--preset delays_SHD trains learned delays: they change, stay within [0, MAX_DELAY_MS],
    and the run reports the ring buffers' memory."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "train_SHD.py"), "--data", data_dir, "--out",
           str(tmp_path), "--preset", "delays_SHD", "--method", "train", "TRIAL_MS=100",
           "NUM_HIDDEN=8", "N_EPOCH=2", "N_TRAIN=60", "N_BATCH=16", "DATA_SET=SHD",
           "MAX_DELAY_MS=40", 'DELAYS={"input_hidden": [0, 40], "hidden_hidden": [0, 0]}',
           "CHECKPOINT=true", "INPUT_HIDDEN_MEAN=0.3", "HIDDEN_HIDDEN_STD=0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "delays: ring buffers of" in done.stdout + done.stderr
    checkpoint = [f for f in os.listdir(tmp_path) if f.endswith(".npz")]
    assert checkpoint, os.listdir(tmp_path)
    state = np.load(tmp_path / checkpoint[0])
    d_in, d_rec = state["param/d_input_hidden"], state["param/d_hidden_hidden"]
    assert d_in.shape == (700, 8) and d_rec.shape == (1, 8, 8)
    assert 0.0 <= d_in.min() and d_in.max() <= 40.0 and d_rec.min() >= 0.0
    from eventprop.simulators.shd import PRESETS, validate
    from eventprop.training.build import build_trainer
    start = build_trainer(validate(dict(PRESETS["delays_SHD"], NUM_HIDDEN=8, MAX_DELAY_MS=40,
                                        INPUT_HIDDEN_MEAN=0.3, HIDDEN_HIDDEN_STD=0.2,
                                        DELAYS={"input_hidden": [0, 40],
                                                "hidden_hidden": [0, 0]})), 700, 20).net
    moved = np.abs(d_in - start.params["d_input_hidden"])
    assert moved.max() > 0.05          # learned (Adam steps of up to ETA_DELAY = 0.1 ms)
    assert d_rec.max() > 0.0           # recurrent delays learned from 0


def test_train_SHD_script_with_preset_and_overrides(data_dir, tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "train_SHD.py"), "--data", data_dir, "--out",
           str(tmp_path), "--preset", "paper_SHD", "TRIAL_MS=100", "NUM_HIDDEN=8", "N_EPOCH=1",
           "N_TRAIN=60", "PROGRESS=false", "DATA_SET=SHD"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    with open(tmp_path / "paper_SHD.json") as f:
        saved = json.load(f)
    assert saved["N_INPUT_DELAY"] == 10 and saved["NUM_HIDDEN"] == 8
    assert saved["AUGMENTATION"] == {"random_shift": 40.0, "blend": [0.5, 0.5]}
    bad = subprocess.run(cmd[:-1] + ["NUM_HIDEN=3"], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert bad.returncode != 0 and "NUM_HIDEN" in bad.stderr


def test_prediction_files_pad_epochs_of_different_size(data_dir, tmp_path):
    """With BALANCE_TRAIN_CLASSES the training set is cut to the smallest class; rows of
    different length are padded with -1, and a resumed run keeps the earlier rows."""
    p = small(data_dir, tmp_path, N_EPOCH=1, REC_PREDICTIONS=True, N_TRAIN=90)
    model = SHD_model(p)
    model.train(p)
    model.train(dict(p, N_EPOCH=2, LOAD_LAST=True, BALANCE_TRAIN_CLASSES=True))
    labels = np.load(tmp_path / "shd_labels_train.npy")
    assert labels.shape == (2, 90)
    n_kept = (labels[1] >= 0).sum()
    assert n_kept < 90 and np.all(labels[1, n_kept:] == -1)
    assert len(set(np.bincount(labels[1, :n_kept]).tolist())) == 1     # balanced


@pytest.mark.parametrize("reg", ["simple", "Thomas1"])
@pytest.mark.parametrize("hidden", ["LIF", "hetLIF", "ALIF"])
def test_every_regulariser_with_every_hidden_type_trains(data_dir, tmp_path, reg, hidden):
    """Strong regularisation towards silence (NU_UPPER 0) lowers the hidden activity."""
    base = small(data_dir, tmp_path, N_EPOCH=3, HIDDEN_NEURON_TYPE=hidden, N_VALIDATE=0,
                 REG_TYPE=reg, LBD_UPPER=0.0, LBD_LOWER=0.0, ETA=1e-2)
    strong = dict(base, NAME="strong", LBD_UPPER=1e-2, NU_UPPER=0, GLB_UPPER=1e-2,
                  RHO_UPPER=0.0)
    model = SHD_model(base)
    model.train(base)
    model.train(strong)
    spikes = [storage.load_epoch_log(str(tmp_path / f"{name}_log.jsonl"))[-1]
              ["train_hidden_spikes_per_sample"] for name in ("shd", "strong")]
    assert spikes[1] < 0.8 * spikes[0]


def test_missing_parameter_files_are_named_when_loading_original_weights(data_dir, tmp_path):
    p = small(data_dir, tmp_path, N_EPOCH=1, NAME="orig", RECURRENT=True)
    model = SHD_model(p)
    net = model.make_network(p).net
    np.save(tmp_path / "orig_w_input_hidden_last.npy", net.params["w_input_hidden"])
    np.save(tmp_path / "orig_w_hidden_output_last.npy", net.params["w_hidden_output"])
    with pytest.warns(RuntimeWarning, match="orig_w_hidden0_hidden0_last.npy"):
        model.test(dict(p, LOAD_LAST=True))
