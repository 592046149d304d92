"""Sweeps on a 2-worker LocalCluster: parameter sets checked before anything is submitted, tasks
identified by their complete parameters in their own folders, failing tasks reported while the
others finish, summaries, re-runs that skip finished tasks, interrupted tasks that restart clean,
tasks whose worker dies, and workers that share the allowed cores."""
import csv
import json
import os

import pytest

from eventprop.backends import threads
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


class NoClient:
    """A client that must not be used."""

    def submit(self, *args, **kwargs):
        raise AssertionError("a task was submitted")


def yinyang_sweep(out, sets=({},), n_epoch=1):
    return {"simulator": "simulator_yinyang", "method": "cross_validate",
            "base": {"N_TRAIN": 60, "N_TEST": 20, "N_EPOCH": n_epoch, "N_FOLDS": 2,
                     "N_BATCH": 30, "MODEL_SEED": 1},
            "grid": {"NUM_HIDDEN": [8, 12]},
            "sets": list(sets),
            "folds": {"FOLDS": [[0], [1]]},
            "out_dir": str(out)}


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_sweep_runs_writes_summaries_and_skips_finished_tasks(client, tmp_path):
    spec = yinyang_sweep(tmp_path / "yy")
    records = sweep.run_sweep(spec, client=client, progress=False)
    assert len(records) == 4 and all(r["status"] == "done" for r in records)
    assert len({r["task_id"] for r in records}) == 4 and len({r["set_id"] for r in records}) == 2
    for r in records:
        folder = tmp_path / "yy" / f"set-{r['set_id']}" / f"task-{r['task_id']}"
        assert r["folder"] == str(folder)
        fold = r["fold_value"][0]
        assert (folder / f"run_fold{fold}_results.txt").exists()
        assert 0.0 <= r["final_eval_acc"] <= 1.0
        assert r["best_eval_acc"] >= r["final_eval_acc"] - 1e-12
        task = read_json(folder / "task.json")
        assert task["status"] == "done" and task["parameters"]["TAU_MEM"] > 0   # defaults in
        [attempt] = task["attempts"]
        assert attempt["status"] == "done" and attempt["host"] and attempt["ended"]
    rows = read_csv(tmp_path / "yy" / "summary.csv")
    assert len(rows) == 4 and {"NUM_HIDDEN", "final_eval_acc", "task_id"} <= set(rows[0])
    sets = read_csv(tmp_path / "yy" / "summary_sets.csv")
    assert [int(s["n_done"]) for s in sets] == [2, 2] and sets[0]["final_eval_acc_mean"] != ""
    set_file = read_json(tmp_path / "yy" / f"set-{records[0]['set_id']}" / "set.json")
    assert set_file["parameters"]["NUM_HIDDEN"] == 8
    assert read_json(tmp_path / "yy" / "sweep.json") == spec

    stamps = {r["task_id"]: os.path.getmtime(os.path.join(r["folder"], "task.json"))
              for r in records}
    again = sweep.run_sweep(spec, client=NoClient(), progress=False)
    assert [r["final_eval_acc"] for r in again] == [r["final_eval_acc"] for r in records]
    assert all(os.path.getmtime(os.path.join(r["folder"], "task.json")) == stamps[r["task_id"]]
               for r in again)


def test_failing_tasks_are_reported_and_run_again(client, tmp_path):
    spec = {"simulator": "sweep_crash", "class": "Steady", "method": "train_test",
            "sets": [{"ACCURACY": 0.75}, {"FAIL": True}], "out_dir": str(tmp_path / "f")}
    records = sweep.run_sweep(spec, client=client, progress=False)
    assert [r["status"] for r in records] == ["done", "failed"]
    assert records[0]["final_eval_acc"] == 0.75
    assert "FAIL was set" in records[1]["error"]
    assert "FAIL was set" in open(os.path.join(records[1]["folder"], "error.txt")).read()
    assert read_csv(tmp_path / "f" / "summary_sets.csv")[1]["final_eval_acc_mean"] == ""
    again = sweep.run_sweep(spec, client=client, progress=False)
    failed = read_json(os.path.join(again[1]["folder"], "task.json"))
    assert [a["status"] for a in failed["attempts"]] == ["failed", "failed"]
    assert len(read_json(os.path.join(again[0]["folder"], "task.json"))["attempts"]) == 1


def test_a_set_given_twice_runs_once(client, tmp_path):
    spec = {"simulator": "sweep_crash", "class": "Steady", "method": "train_test",
            "sets": [{"ACCURACY": 0.25}, {"ACCURACY": 0.25}], "out_dir": str(tmp_path)}
    records = sweep.run_sweep(spec, client=client, progress=False)
    assert [r["set"] for r in records] == [0, 1] and records[0]["folder"] == records[1]["folder"]
    assert len(read_json(os.path.join(records[0]["folder"], "task.json"))["attempts"]) == 1
    assert [row["n_done"] for row in read_csv(tmp_path / "summary_sets.csv")] == ["1", "1"]


def test_invalid_sets_are_reported_before_anything_is_submitted(tmp_path, capsys):
    spec = yinyang_sweep(tmp_path / "bad", sets=[{}, {"TAU_MEM": -1.0}, {"TAU_MEMM": 20.0}])
    with pytest.raises(sweep.InvalidSweep) as error:
        sweep.run_sweep(spec, client=NoClient(), progress=False)
    lines = str(error.value).splitlines()[1:]
    # one error per invalid set (not per fold): sets 1, 2, 4, 5 of the 2 x 3 sets
    assert [line.split(" {")[0].strip() for line in lines] == ["set 1", "set 2", "set 4",
                                                               "set 5"]
    assert "TAU_MEM" in lines[0] and "-1.0" in lines[0] and "TAU_MEMM" in lines[1]
    assert not (tmp_path / "bad").exists()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as exit_code:
        sweep.main([str(path)])
    assert exit_code.value.code != 0
    assert "set 1" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_a_changed_set_runs_again_in_a_new_folder(client, tmp_path):
    spec = yinyang_sweep(tmp_path / "yy", sets=[{"ETA": 1e-3}])
    spec["grid"] = {"NUM_HIDDEN": [8]}
    first = sweep.run_sweep(spec, client=client, progress=False)
    stamp = os.path.getmtime(os.path.join(first[0]["folder"], "task.json"))
    # the same complete parameters (a default written out) are the same tasks: skipped
    same = dict(spec, base=dict(spec["base"], TAU_MEM=sweep.tasks(spec)[0]["p"]["TAU_MEM"]))
    assert [r["task_id"] for r in sweep.run_sweep(same, client=NoClient(), progress=False)] == \
        [r["task_id"] for r in first]
    changed = dict(spec, sets=[{"ETA": 2e-3}])
    second = sweep.run_sweep(changed, client=client, progress=False)
    assert {r["folder"] for r in second}.isdisjoint(r["folder"] for r in first)
    assert all(os.path.isdir(r["folder"]) for r in first)
    assert os.path.getmtime(os.path.join(first[0]["folder"], "task.json")) == stamp
    assert all(r["parameters"]["ETA"] == 2e-3 for r in second)
    rows = read_csv(tmp_path / "yy" / "summary.csv")
    assert [row["task_id"] for row in rows] == [r["task_id"] for r in second]
    assert read_csv(tmp_path / "yy" / "summary_sets.csv")[0]["ETA"] == "0.002"
    assert read_json(tmp_path / "yy" / "sweep.json") == changed


def test_an_interrupted_task_restarts_clean(client, tmp_path):
    spec = yinyang_sweep(tmp_path / "yy", n_epoch=2)
    spec["grid"] = {"NUM_HIDDEN": [8]}
    spec["folds"] = {"FOLDS": [[0]]}
    [done] = sweep.run_sweep(spec, client=client, progress=False)
    folder = done["folder"]
    # as a sweep killed mid-task leaves it: status "running", a stale pass in the logs
    task = read_json(os.path.join(folder, "task.json"))
    task["status"] = task["attempts"][0]["status"] = "running"
    task["attempts"][0]["ended"] = None
    with open(os.path.join(folder, "task.json"), "w") as f:
        json.dump(task, f)
    with open(os.path.join(folder, "run_fold0_log.jsonl"), "a") as f:
        f.write(json.dumps({"epoch": 0, "validation_acc": 1.0}) + "\n")
    [again] = sweep.run_sweep(spec, client=client, progress=False)
    assert again["task_id"] == done["task_id"] and again["folder"] == folder
    assert again["best_eval_acc"] == done["best_eval_acc"] < 1.0
    assert again["final_eval_acc"] == done["final_eval_acc"]
    assert len(open(os.path.join(folder, "run_fold0_log.jsonl")).readlines()) == 2
    assert [a["status"] for a in read_json(os.path.join(folder, "task.json"))["attempts"]] == \
        ["interrupted", "done"]


def test_a_task_whose_worker_dies_is_retried_clean(client, tmp_path):
    spec = {"simulator": "sweep_crash", "class": "Crashy", "method": "cross_validate",
            "base": {"MARKER": str(tmp_path / "crashed_once")}, "out_dir": str(tmp_path / "c")}
    [record] = sweep.run_sweep(spec, client=client, progress=False)
    assert record["status"] == "done" and record["final_eval_acc"] == 0.5
    assert (tmp_path / "crashed_once").exists()
    assert not os.path.exists(os.path.join(record["folder"], "partial_result.txt"))
    attempts = read_json(os.path.join(record["folder"], "task.json"))["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "done"]
    assert attempts[0]["pid"] != attempts[1]["pid"]


def test_a_rerun_with_nothing_left_to_do_says_so(client, tmp_path, capsys):
    spec = yinyang_sweep(tmp_path / "yy")
    spec["grid"] = {"NUM_HIDDEN": [8]}
    sweep.run_sweep(spec, client=client, progress=False)
    os.unlink(tmp_path / "yy" / "summary.csv")
    path = tmp_path / "yy.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as exit_code:
        sweep.main([str(path)])          # would start a LocalCluster if anything were left
    assert exit_code.value.code == 0
    assert "all 2 tasks done" in capsys.readouterr().out
    assert len(read_csv(tmp_path / "yy" / "summary.csv")) == 2


def test_each_task_uses_its_share_of_the_allowed_cores(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(threads, "use_threads", lambda n=None: calls.append(n) or n)
    task = sweep.tasks({"simulator": "sweep_crash", "class": "Steady", "method": "train_test",
                        "out_dir": str(tmp_path)})[0]
    for cores, workers, share in ((8, 3, 2), (6, 4, 1), (1, 2, 1), (4, 1, 4)):
        monkeypatch.setattr(threads, "allowed_cores", lambda cores=cores: cores)
        monkeypatch.setenv(sweep.WORKERS_VARIABLE, str(workers))
        if os.path.exists(os.path.join(task["folder"], "task.json")):
            os.unlink(os.path.join(task["folder"], "task.json"))      # run it again
        record = sweep.run_task("sweep_crash", "Steady", "train_test", task)
        assert calls[-1] == share and record["attempts"][-1]["threads"] == share


def test_workers_started_by_others_share_the_cores_of_their_host(client, tmp_path):
    spec = {"simulator": "sweep_crash", "class": "Steady", "method": "train_test",
            "out_dir": str(tmp_path)}
    client.wait_for_workers(2, timeout=60)       # a worker killed by an earlier test is back
    [record] = sweep.run_sweep(spec, client=client, progress=False)   # 2 workers, this host
    allowed = client.run(threads.allowed_cores)
    assert record["attempts"][0]["threads"] == max(1, min(allowed.values()) // 2)


def test_the_default_local_cluster_splits_the_allowed_cores(monkeypatch):
    monkeypatch.setattr(threads, "allowed_cores", lambda: 1)
    monkeypatch.setattr(sweep, "count_gpus", lambda: 0)
    with sweep.make_client() as local:
        cluster = local.cluster
        environ = local.run(lambda: os.environ.get(sweep.WORKERS_VARIABLE))
        assert list(environ.values()) == ["1"]
        assert list(local.nthreads().values()) == [1]
    cluster.close()


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
    path = os.path.join(os.path.dirname(TESTS), "sweeps", name)
    spec = sweep.load_spec(path)
    all_tasks = sweep.tasks(spec)            # validates every task's parameters
    assert len(all_tasks) > 10
    assert len({t["task_id"] for t in all_tasks}) == len(all_tasks)
