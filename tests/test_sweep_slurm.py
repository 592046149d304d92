"""A sweep through dask-jobqueue's SLURMCluster on a real single-node SLURM (slurm_cluster.py):
a worker job cancelled with scancel while it trains has its task retried clean on another worker,
and the summary equals the same sweep's on a LocalCluster. Skipped, with the reason, where SLURM
cannot run (no slurm-wlm / munge packages, not root, daemons that do not start)."""
import csv
import json
import os
import threading
import time

import pytest

from eventprop.tools import sweep
from slurm_cluster import SingleNodeSlurm, SlurmUnavailable

SWEEP_SECONDS = 150          # the SLURM sweep and its local twin each end well before this


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    pytest.importorskip("dask_jobqueue", reason="dask-jobqueue is not installed "
                                                "(pip install \".[cluster]\")")
    cluster = SingleNodeSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as error:
        pytest.skip(f"no single-node SLURM here: {error}")
    saved = {key: os.environ.get(key) for key in cluster.env}
    os.environ.update(cluster.env)        # sbatch, squeue and scancel of dask-jobqueue find it
    yield cluster
    cluster.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def tiny_yinyang(out, cluster):
    """Two parameter sets, one fold each, about 8 s of training per task on one core."""
    return {"simulator": "simulator_yinyang", "method": "cross_validate",
            "base": {"N_TRAIN": 1000, "N_TEST": 20, "N_EPOCH": 16, "N_FOLDS": 2, "N_BATCH": 32,
                     "MODEL_SEED": 1, "LOSS_TYPE": "first_spike", "ALPHA": 0.1,
                     "SHUFFLE": True, "ETA": 3e-3},
            "grid": {"NUM_HIDDEN": [25, 50]},
            "folds": {"FOLDS": [[0]]},
            "out_dir": str(out), "cluster": cluster}


def run_in_background(spec, **kwargs):
    """run_sweep in a thread: returns (thread, outcome dict that gets "records" or "error")."""
    outcome = {}

    def target():
        try:
            outcome["records"] = sweep.run_sweep(spec, progress=False, **kwargs)
        except BaseException as error:      # reported by the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def training_task(out_dir, deadline):
    """(folder, SLURM job) of the first task whose attempt runs in a job and has logged an
    epoch, waiting until ``deadline``; None when none did."""
    while time.monotonic() < deadline:
        for root, _, files in os.walk(out_dir):
            if "task.json" in files and any(f.endswith("_log.jsonl") for f in files):
                task = sweep.read_task_file(root)
                if task and task["status"] == "running" and task["attempts"][-1]["slurm_job"]:
                    return root, task["attempts"][-1]["slurm_job"]
        time.sleep(0.1)
    return None


def finish(thread, outcome, what, logs):
    thread.join(SWEEP_SECONDS)
    if thread.is_alive():
        pytest.fail(f"the {what} sweep did not end within {SWEEP_SECONDS} s; worker logs in "
                    f"{logs}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["records"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_cancelled_worker_job_is_retried_and_the_summary_equals_a_local_run(slurm, tmp_path):
    logs = tmp_path / "job_logs"
    on_slurm = tiny_yinyang(tmp_path / "slurm", {
        "type": "slurm", "jobs": 2, "cores": 1, "memory": "1GB", "walltime": "00:10:00",
        "queue": slurm.partition, "interface": "lo", "log_directory": str(logs),
        "local_directory": str(tmp_path / "dask")})
    thread, outcome = run_in_background(on_slurm)
    found = training_task(tmp_path / "slurm", time.monotonic() + SWEEP_SECONDS / 2)
    if found is None:
        pytest.fail(f"no task started training in a SLURM job; jobs {slurm.jobs()}, worker logs "
                    f"in {logs}")
    folder, job = found
    slurm.scancel(job)
    records = finish(thread, outcome, "SLURM", logs)

    assert [r["status"] for r in records] == ["done", "done"]
    attempts = json.loads(open(os.path.join(folder, "task.json")).read())["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "done"]
    assert attempts[0]["slurm_job"] == job and attempts[1]["slurm_job"] not in (None, job)
    assert all(a["threads"] == 1 for r in records for a in
               json.loads(open(os.path.join(r["folder"], "task.json")).read())["attempts"])
    log_lines = open(os.path.join(folder, "run_fold0_log.jsonl")).readlines()
    assert len(log_lines) == on_slurm["base"]["N_EPOCH"]          # one pass, not two mixed

    on_this_machine = dict(on_slurm, out_dir=str(tmp_path / "local"), cluster={"type": "local"})
    thread, outcome = run_in_background(on_this_machine, workers=2)
    finish(thread, outcome, "local", logs)
    columns = ("NUM_HIDDEN", "n_done", "final_train_acc_mean", "final_eval_acc_mean",
               "best_eval_acc_mean")
    slurm_rows = read_csv(tmp_path / "slurm" / "summary_sets.csv")
    local_rows = read_csv(tmp_path / "local" / "summary_sets.csv")
    assert [[row[c] for c in columns] for row in slurm_rows] == \
        [[row[c] for c in columns] for row in local_rows]
    assert float(slurm_rows[0]["final_eval_acc_mean"]) > 0.4       # it learned something
