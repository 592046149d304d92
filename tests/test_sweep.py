"""Sweeps on a 2-worker LocalCluster: tasks in their own folders, a failing task reported while
the others finish, summaries, re-runs that skip finished tasks, and a task whose worker dies."""
import csv
import json
import os

import pytest

from eventprop.tools import sweep

distributed = pytest.importorskip("distributed")

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def client():
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [TESTS, os.path.dirname(TESTS), os.environ.get("PYTHONPATH", "")])
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def yinyang_sweep(out):
    return {"simulator": "simulator_yinyang", "method": "cross_validate",
            "base": {"N_TRAIN": 60, "N_TEST": 20, "N_EPOCH": 1, "N_FOLDS": 2, "N_BATCH": 30,
                     "MODEL_SEED": 1},
            "grid": {"NUM_HIDDEN": [8, 12]},
            "sets": [{}, {"TAU_MEM": -1.0}],          # the second set is invalid: it fails
            "folds": {"FOLDS": [[0], [1]]},
            "out_dir": str(out)}


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_runs_reports_failures_and_skips_finished_tasks(client, tmp_path):
    spec = yinyang_sweep(tmp_path / "yy")
    records = sweep.run_sweep(spec, client=client, progress=False)
    assert len(records) == 8
    done = [r for r in records if r["status"] == "done"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(done) == 4 and len(failed) == 4
    assert all(r["overrides"].get("TAU_MEM") == -1.0 for r in failed)
    assert all("TAU_MEM" in r["error"] for r in failed)
    for r in records:
        folder = tmp_path / "yy" / f"set{r['set']:03d}" / f"fold{r['fold']:02d}"
        assert (folder / "task.json").exists()
        if r["status"] == "done":
            fold = r["fold_value"][0]
            assert (folder / f"run_fold{fold}_results.txt").exists()
            assert 0.0 <= r["final_eval_acc"] <= 1.0
            assert r["best_eval_acc"] >= r["final_eval_acc"] - 1e-12
        else:
            assert "TAU_MEM" in (folder / "error.txt").read_text()
    rows = read_csv(tmp_path / "yy" / "summary.csv")
    assert len(rows) == 8 and {"NUM_HIDDEN", "TAU_MEM", "final_eval_acc"} <= set(rows[0])
    sets = read_csv(tmp_path / "yy" / "summary_sets.csv")
    assert [int(s["n_done"]) for s in sets] == [2, 0, 2, 0]
    assert sets[0]["final_eval_acc_mean"] != "" and sets[1]["final_eval_acc_mean"] == ""
    with open(tmp_path / "yy" / "set000" / "set.json") as f:
        assert json.load(f)["parameters"]["NUM_HIDDEN"] == 8

    stamps = {r["set"]: os.path.getmtime(tmp_path / "yy" / f"set{r['set']:03d}" / "fold00" /
                                          "task.json") for r in records if r["fold"] == 0}
    again = sweep.run_sweep(spec, client=client, progress=False)
    assert [r["status"] for r in again] == [r["status"] for r in records]
    for s, stamp in stamps.items():
        now = os.path.getmtime(tmp_path / "yy" / f"set{s:03d}" / "fold00" / "task.json")
        assert (now == stamp) == (s in (0, 2))      # finished tasks skipped, failed ones rerun


def test_a_task_whose_worker_dies_is_retried(client, tmp_path):
    spec = {"simulator": "sweep_crash", "class": "Crashy", "method": "cross_validate",
            "out_dir": str(tmp_path / "crash")}
    records = sweep.run_sweep(spec, client=client, progress=False)
    assert records[0]["status"] == "done" and records[0]["final_eval_acc"] == 0.5
    assert (tmp_path / "crash" / "set000" / "fold00" / "crashed_once").exists()


def test_sweep_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        sweep.load_spec(str(tmp_path / "nothere.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        sweep.load_spec(str(bad))
    with pytest.raises(KeyError, match="gird"):
        sweep.load_spec({"simulator": "simulator_yinyang", "method": "train",
                         "out_dir": "x", "gird": {}})
    with pytest.raises(ValueError, match="method"):
        sweep.load_spec({"simulator": "simulator_yinyang", "method": "fit", "out_dir": "x"})


def test_parameter_sets_are_the_grid_times_the_sets():
    spec = {"grid": {"A": [1, 2], "B": [3]}, "sets": [{"C": 0}, {"C": 1, "A": 9}]}
    assert sweep.parameter_sets(spec) == [{"A": 1, "B": 3, "C": 0}, {"A": 9, "B": 3, "C": 1},
                                          {"A": 2, "B": 3, "C": 0}, {"A": 9, "B": 3, "C": 1}]


@pytest.mark.parametrize("name", ["shd_final_crossvalidation.json", "shd_loss_comparison.json"])
def test_the_paper_sweep_files_are_valid(name):
    from eventprop.simulators.shd import validate
    path = os.path.join(os.path.dirname(TESTS), "sweeps", name)
    spec = sweep.load_spec(path)
    all_tasks = sweep.tasks(spec)
    assert len(all_tasks) > 10
    for task in all_tasks[:50] + all_tasks[-50:]:
        validate(task["p"])
