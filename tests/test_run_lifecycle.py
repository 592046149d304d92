"""A run's life: one run per OUT_DIR/NAME (the lock), file modes, resuming after a kill or a full
disk, checks before anything is written, and what the run says (progress, compilation, spike
overflow, epoch numbers). Small Yin-Yang runs."""
import errno
import io
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from eventprop import storage
from eventprop.simulators.yinyang import p as default_p
from eventprop.simulators.yinyang import yinyang
from eventprop.training import trainer as trainer_module
from eventprop.training.experiment import Experiment

SMALL = {"N_TRAIN": 100, "N_TEST": 30, "N_EPOCH": 1, "NUM_HIDDEN": 20, "MODEL_SEED": 3,
         "PROGRESS": False, "ETA": 5e-3}


def small(out, **kw):
    p = dict(default_p)
    p.update(SMALL, OUT_DIR=str(out), NAME="yy")
    p.update(kw)
    return p


def contents(folder):
    """File name -> bytes of every file in ``folder``."""
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


# --- one run per OUT_DIR/NAME -----------------------------------------------------------------

PAUSED_RUN = """
import json, sys
from eventprop.simulators.yinyang import yinyang

class Paused(yinyang):
    def wants_weight_snapshot(self, p, epoch, trial):
        if (epoch, trial) == (0, 0):      # after the first trial: say so, then wait
            print("running", flush=True)
            sys.stdin.readline()
        return False

p = json.loads(sys.argv[1])
Paused(p).train(p)
"""


def test_a_second_run_of_the_same_name_fails_at_once_and_a_dead_holder_is_taken_over(tmp_path):
    first = small(tmp_path, MODEL_SEED=1)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PAUSED_RUN), json.dumps(first)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        lock = json.loads((tmp_path / "yy.lock").read_text())
        assert lock["pid"] == proc.pid and lock["host"] == socket.gethostname()
        assert "started" in lock
        before = contents(tmp_path)
        second = small(tmp_path, MODEL_SEED=2)
        with pytest.raises(storage.RunInProgressError) as error:
            yinyang(second).train(second)
        message = str(error.value)
        for part in (str(tmp_path), "'yy'", f"PID {proc.pid}", socket.gethostname()):
            assert part in message
        assert contents(tmp_path) == before          # nothing written by the second run
        proc.kill()                                  # the holder dies without releasing
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "yy.lock").exists()
    with pytest.warns(RuntimeWarning, match=f"no longer alive.*PID {proc.pid}"):
        yinyang(second).train(second)
    assert json.loads((tmp_path / "yy.json").read_text())["MODEL_SEED"] == 2
    assert not (tmp_path / "yy.lock").exists()


def test_the_lock_is_released_on_errors_and_another_hosts_lock_blocks(tmp_path, monkeypatch):
    p = small(tmp_path)
    model = yinyang(p)

    def broken(*args):
        raise RuntimeError("broken epoch")
    monkeypatch.setattr(model, "epoch_data", broken)
    with pytest.raises(RuntimeError, match="broken epoch"):
        model.train(p)
    assert not (tmp_path / "yy.lock").exists()
    monkeypatch.undo()
    (tmp_path / "yy.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1,
                                                  "started": "yesterday"}))
    with pytest.raises(storage.RunInProgressError, match="host elsewhere, PID 1"):
        yinyang(p).train(p)
    (tmp_path / "yy.lock").unlink()
    yinyang(p).train(p)
    assert not (tmp_path / "yy.lock").exists()


# --- file modes -------------------------------------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    p = small(tmp_path, REC_SPIKES=["hidden"], REC_EPOCH_TRIAL=[[0, 0]])
    model = yinyang(p)
    old = os.umask(umask)
    try:
        model.train_test(p)
        storage.save_npz(str(tmp_path / "cache.npz"), {"a": np.arange(3)})
    finally:
        os.umask(old)
    for name in ("yy_results.txt", "yy_log.jsonl", "yy.json", "yy_checkpoint_last.npz",
                 "yy_w_input_hidden_last.npy", "yy_w_input_hidden_e0_t0.npy",
                 "yy_hidden_spike_t.npy", "cache.npz"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(mode), name


# --- resume after a kill or a full disk -------------------------------------------------------

def rows_and_weights(folder):
    results = np.loadtxt(folder / "yy_results.txt")
    log = storage.load_epoch_log(str(folder / "yy_log.jsonl"))
    return (results[:, :5], [r["epoch"] for r in log], [r["test_acc"] for r in log],
            np.load(folder / "yy_w_hidden_output_last.npy"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Rows and weights of a run of 3 epochs that nothing interrupts."""
    out = tmp_path_factory.mktemp("whole")
    p = small(out, N_EPOCH=3)
    yinyang(p).train_test(p)
    return rows_and_weights(out)


def assert_like_uninterrupted(folder, uninterrupted):
    results, epochs, test_acc, weights = rows_and_weights(folder)
    assert list(results[:, 0]) == [0, 1, 2] and epochs == [0, 1, 2]
    assert np.array_equal(results, uninterrupted[0])
    assert test_acc == uninterrupted[2]
    assert np.array_equal(weights, uninterrupted[3])


def test_a_kill_between_checkpoint_and_rows_neither_repeats_nor_skips(tmp_path, monkeypatch,
                                                                         uninterrupted):
    append_line = storage.append_line

    def killed_at_epoch_1(path, line):
        if path.endswith("_results.txt") and line.startswith("1 "):
            raise KeyboardInterrupt("killed")
        append_line(path, line)
    p = small(tmp_path, N_EPOCH=3)
    model = yinyang(p)
    monkeypatch.setattr(storage, "append_line", killed_at_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        model.train_test(p)
    monkeypatch.undo()
    model.train_test(dict(p, LOAD_LAST=True))
    assert_like_uninterrupted(tmp_path, uninterrupted)


@pytest.mark.parametrize("failure", [KeyboardInterrupt("killed"),
                                     OSError(errno.ENOSPC, "No space left on device")])
def test_a_failed_checkpoint_write_leaves_one_consistent_checkpoint(tmp_path, monkeypatch,
                                                                     uninterrupted, failure):
    """A kill or a full disk while checkpoint "last" of epoch 1 is written: the checkpoint, its
    .npy exports and the rows all stay at epoch 0; the error names the file; the resumed run
    continues like an uninterrupted one."""
    savez = np.savez

    def failing(f, **arrays):
        if "epoch" in arrays and int(arrays["epoch"]) == 1:
            raise failure
        savez(f, **arrays)
    p = small(tmp_path, N_EPOCH=3)
    model = yinyang(p)
    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(type(failure)) as error:
        model.train_test(p)
    monkeypatch.undo()
    if isinstance(failure, OSError):
        assert error.value.errno == errno.ENOSPC
        assert str(tmp_path / "yy_checkpoint_last.npz") in str(error.value)
    assert not (tmp_path / "yy.lock").exists()
    assert list(np.loadtxt(tmp_path / "yy_results.txt", ndmin=2)[:, 0]) == [0]
    with np.load(tmp_path / "yy_checkpoint_last.npz") as checkpoint:
        assert int(checkpoint["epoch"]) == 0
        assert np.array_equal(checkpoint["param/w_hidden_output"],
                              np.load(tmp_path / "yy_w_hidden_output_last.npy"))
    model.train_test(dict(p, LOAD_LAST=True))
    assert_like_uninterrupted(tmp_path, uninterrupted)


def test_load_last_of_a_finished_run_says_so_and_returns_its_accuracies(tmp_path):
    p = small(tmp_path, N_EPOCH=2)
    model = yinyang(p)
    *_, train_acc, test_acc = model.train_test(p)
    before = contents(tmp_path)
    with pytest.warns(RuntimeWarning, match="finished.*epoch 1"):
        *_, again_train, again_test = model.train_test(dict(p, LOAD_LAST=True))
    assert again_train == pytest.approx(train_acc, abs=1e-6)
    assert again_test == pytest.approx(test_acc, abs=1e-6)
    assert contents(tmp_path) == before


# --- checks before anything is written --------------------------------------------------------

def gpu_available():
    from numba import cuda
    return cuda.is_available()


@pytest.mark.parametrize("change,error,match", [
    ({"REC_SPIKES": ["hiden"]}, ValueError, "REC_SPIKES.*hiden"),
    ({"REC_NEURONS": [("input", "V")]}, ValueError, "REC_NEURONS"),
    ({"LOAD_LAST": True, "CHECKPOINT_NAME": "nothere"}, FileNotFoundError,
     "nothere_checkpoint_last.npz"),
    ({"LOAD_LAST": True, "NUM_HIDDEN": 30}, ValueError, "yy_checkpoint_last.npz.*shape"),
    pytest.param({"BACKEND": "cuda"}, RuntimeError, "BACKEND 'cuda'",
                 marks=pytest.mark.skipif(gpu_available(), reason="a GPU is available")),
])
def test_errors_come_before_any_file_is_written(tmp_path, change, error, match):
    p = small(tmp_path)
    yinyang(p).train(p)
    before = contents(tmp_path)
    bad = small(tmp_path, **change)
    with pytest.raises(error, match=match):
        yinyang(bad).train(bad)
    assert contents(tmp_path) == before


def test_preflight_checks_without_data(tmp_path):
    """What a simulator can check before it loads its data: ``Experiment.preflight``."""
    with pytest.raises(ValueError, match="REC_SPIKES"):
        Experiment().preflight(small(tmp_path, REC_SPIKES=["outptu"]))
    with pytest.raises(FileNotFoundError, match="yy_checkpoint_best.npz"):
        Experiment().preflight(small(tmp_path, LOAD_BEST=True))
    Experiment().preflight(small(tmp_path, REC_SPIKES=["hidden0", "output"]))
    assert os.listdir(tmp_path) == []


# --- what the run says ------------------------------------------------------------------------

def test_without_a_terminal_one_line_per_epoch_numbered_from_0(tmp_path, capsys):
    p = small(tmp_path, N_EPOCH=2, PROGRESS=True)
    yinyang(p).train_test(p)
    out, err = capsys.readouterr()
    assert "\r" not in err and "it/s" not in err                 # no progress bar
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["0/2", "1/2"]
    for line in lines:
        assert re.search(r"train acc [\d.]+ loss [\d.]+ \| test acc [\d.]+ loss [\d.]+", line)
        assert re.search(r"\| [\d.]+ s$", line)
    logged = [r["epoch"] for r in storage.load_epoch_log(str(tmp_path / "yy_log.jsonl"))]
    assert logged == [0, 1]


def test_on_a_terminal_the_bar_advances_per_trial(tmp_path, monkeypatch):
    bars = []

    class RecordedBar(trainer_module.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.steps = []
            bars.append(self)

        def update(self, n=1):
            self.steps.append(n)
            return super().update(n)

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(trainer_module, "tqdm", RecordedBar)
    monkeypatch.setattr(sys, "stderr", Terminal())
    p = small(tmp_path, PROGRESS=True)
    yinyang(p).train_test(p)
    n_train, n_test = -(-3 * p["N_TRAIN"] // p["N_BATCH"]), -(-3 * p["N_TEST"] // p["N_BATCH"])
    assert [bar.total for bar in bars] == [n_train, n_test]
    assert [bar.steps for bar in bars] == [[1] * n_train, [1] * n_test]
    assert "epoch 0/1 train" in sys.stderr.getvalue()


def test_the_first_trial_says_it_compiles_and_how_long_it_took(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer_module, "_STARTED_KERNELS", set())
    p = small(tmp_path, PROGRESS=True)
    yinyang(p).train(p)
    out = capsys.readouterr().out
    assert "compiling kernels (first run only" in out
    assert re.search(r"first trial \(numba compilation or cache load\) took [\d.]+ s", out)
    assert out.index("compiling") < out.index("first trial") < out.index("epoch 0/1")
    yinyang(p).train(dict(p, NAME="again"))
    assert "compiling" not in capsys.readouterr().out


def test_spike_overflow_names_the_population_and_what_would_suffice(tmp_path):
    """ETA 0: the same spikes whatever N_MAX_SPIKE; the number the warning suggests is enough
    and one less is not."""
    p = small(tmp_path, ETA=0.0, N_MAX_SPIKE=1, INPUT_HIDDEN_MEAN=3.0)
    with pytest.warns(RuntimeWarning, match="N_MAX_SPIKE") as caught:
        yinyang(p).train(p)
    message = str(caught[0].message)
    assert "hidden layer 0" in message
    suffice = int(re.search(r"N_MAX_SPIKE = (\d+) would suffice", message).group(1))
    assert suffice > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yinyang(p).train(dict(p, N_MAX_SPIKE=suffice))
    with pytest.warns(RuntimeWarning, match="N_MAX_SPIKE"):
        yinyang(p).train(dict(p, N_MAX_SPIKE=suffice - 1))


@pytest.mark.parametrize("simulator", ["shd", "dvs_gesture", "mnist", "smnist"])
def test_simulators_check_before_loading_data(tmp_path, simulator):
    """A typo in REC_SPIKES (or a missing checkpoint) is reported before the data are read:
    the data folder does not even exist, and nothing is written."""
    import importlib
    module = importlib.import_module(f"eventprop.simulators.{simulator}")
    model_class = {"shd": "SHD_model", "dvs_gesture": "DVS_gesture_model",
                   "mnist": "mnist_model", "smnist": "SMNIST_model"}[simulator]
    p = dict(module.p, DATA_DIR=str(tmp_path / "no_data_here"), OUT_DIR=str(tmp_path / "out"),
             REC_SPIKES=["outptu"])
    with pytest.raises(ValueError, match="REC_SPIKES"):
        getattr(module, model_class)(p)
    p.update(REC_SPIKES=[], LOAD_LAST=True)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        getattr(module, model_class)(p)
    assert not (tmp_path / "out").exists()
