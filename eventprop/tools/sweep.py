"""Parameter sweeps with cross-validation on Dask: every (parameter set, fold) is one task.

A sweep is a dict, or a JSON / YAML file holding one:

    {"simulator": "shd",                      # eventprop.simulators.shd (or "simulator_SHD")
     "method": "cross_validate",              # or "train", "train_test"
     "base": {"DATA_DIR": "data", ...},       # p overrides shared by every task
     "grid": {"NUM_HIDDEN": [256, 512]},      # every combination of these values ...
     "sets": [{"LOSS_TYPE": "sum"}, ...],     # ... with each of these override sets
     "folds": {"SPEAKER_LEFT": [[0], [1]]},   # one task per value (omit: one task per set)
     "out_dir": "sweeps/example",
     "cluster": {"type": "local"}}            # or slurm / pbs / {"address": "tcp://..."}

"simulator" names a module of ``eventprop.simulators`` ("yinyang", "mnist", "shd", "smnist",
"dvs_gesture"; its class is found by SIMULATORS), or the same under the original's module name
("simulator_SHD", as the shipped sweeps/*.json say), or any importable module with "class".

Before anything runs, every task's p (base + set + fold value) is completed with the simulator's
defaults and checked by its ``validate``; a sweep with invalid sets raises ``InvalidSweep``
naming each set and its key, and nothing is submitted. A task is identified by a hash of the
simulator, the method and its complete p (``task_id``); its set by the same without the fold
(``set_id``). Task files go to ``out_dir/set-{set_id}/task-{task_id}`` (OUT_DIR there, NAME
"run"), so a set whose parameters change runs again in a new folder and the old results stay
where they were, out of the new summaries.

``task.json`` in the task's folder holds its status ("running", "done", "failed"), accuracies,
parameters and every attempt (start, end, host, SLURM job, threads, status, error). Running the
sweep again skips the tasks that are done; any other task restarts clean: the files of an
earlier attempt (failed, or "running" when its worker died) are removed first, so a result never
mixes attempts. A task that raises is reported with its traceback (also in ``error.txt``) and the
others go on; a task whose worker dies is retried on another worker by Dask. Each task uses
``allowed_cores() // workers sharing them`` numba threads. At the end ``sweep.json``,
``summary.csv`` (one row per task) and ``summary_sets.csv`` (one row per parameter set: mean and
std over its folds) are written.

    python sweep.py SWEEP_FILE [--out DIR] [--workers N] [--scheduler ADDRESS]
"""
import argparse
import csv
import datetime
import hashlib
import importlib
import io
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import traceback
import uuid

import numpy as np
from tqdm import tqdm

from eventprop import storage
from eventprop.backends import threads

# module of eventprop.simulators -> its simulator class
SIMULATORS = {"yinyang": "yinyang", "shd": "SHD_model", "mnist": "mnist_model",
              "smnist": "SMNIST_model", "dvs_gesture": "DVS_gesture_model"}
# the original's module names -> module of eventprop.simulators
ORIGINAL_NAMES = {"simulator_yinyang": "yinyang", "simulator_SHD": "shd",
                  "simulator_MNIST": "mnist", "simulator_SMNIST": "smnist",
                  "simulator_DVS_gesture": "dvs_gesture"}
METHODS = ("train", "train_test", "cross_validate")
SPEC_KEYS = {"simulator", "class", "method", "base", "grid", "sets", "folds", "out_dir",
             "cluster", "retries"}
# keys the sweep sets for every task (where its files go, no progress bars): not part of a
# task's identity
SET_BY_SWEEP = ("OUT_DIR", "NAME", "PROGRESS")
# environment of the workers a sweep starts: how many share this machine's (or job's) cores,
# and the GPUs of a local cluster
WORKERS_VARIABLE = "EVENTPROP_SWEEP_WORKERS"
GPUS_VARIABLE = "EVENTPROP_SWEEP_GPUS"
ID_LENGTH = 12


class InvalidSweep(ValueError):
    """Parameter sets of a sweep that the simulator rejects; nothing was submitted."""


# --- the sweep file ------------------------------------------------------------------------------

def simulator_module(name):
    """(module to import, simulator class or None) of a sweep's "simulator": a module of
    eventprop.simulators by its short or original name, else ``name`` itself."""
    short = ORIGINAL_NAMES.get(name, name)
    if short in SIMULATORS:
        return f"eventprop.simulators.{short}", SIMULATORS[short]
    return name, None


def load_spec(source):
    """The sweep as a dict, from a dict or a .json / .yaml / .yml file, checked."""
    if isinstance(source, dict):
        spec = dict(source)
    else:
        path = str(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sweep file {path} not found")
        with open(path) as f:
            text = f.read()
        try:
            if path.endswith((".yaml", ".yml")):
                import yaml
                spec = yaml.safe_load(text)
            else:
                spec = json.loads(text)
        except Exception as e:
            raise ValueError(f"{path} is not a valid sweep file: {e}") from e
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: a sweep file holds one object (a dict)")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise KeyError(f"unknown sweep keys {sorted(unknown)}; valid: {sorted(SPEC_KEYS)}")
    for key in ("simulator", "method", "out_dir"):
        if key not in spec:
            raise KeyError(f"the sweep needs {key!r}")
    if spec["method"] not in METHODS:
        raise ValueError(f"sweep 'method' {spec['method']!r} not in {METHODS}")
    folds = spec.get("folds")
    if folds is not None and (not isinstance(folds, dict) or len(folds) != 1):
        raise ValueError("sweep 'folds' must map one parameter to its list of values, e.g. "
                         "{\"SPEAKER_LEFT\": [[0], [1]]} or {\"FOLDS\": [[0], [1], [2]]}")
    return spec


def parameter_sets(spec):
    """Override dicts of every parameter set: each combination of the grid with each set."""
    grid = spec.get("grid") or {}
    keys = list(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*grid.values())]
    sets = spec.get("sets") or [{}]
    return [{**c, **s} for c in combos for s in sets]


def simulator_of(spec):
    """(module name, class name, the module's ``validate`` or None) of a sweep."""
    module_name, known_class = simulator_module(spec["simulator"])
    class_name = spec.get("class") or known_class
    if class_name is None:
        raise ValueError(f"sweep 'class' is needed for simulator {spec['simulator']!r}")
    module = importlib.import_module(module_name)
    return module_name, class_name, getattr(module, "validate", None)


def identity(content):
    """A short hex digest of a JSON-able description."""
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def _error_text(error):
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


def tasks(spec, out_dir=None):
    """Every task: dict(set, fold, set_id, task_id, folder, p, overrides, fold_value), with p
    complete and checked by the simulator's ``validate``. Raises ``InvalidSweep`` naming every
    set the simulator rejects (one error per set)."""
    out_dir = out_dir or spec["out_dir"]
    module_name, class_name, validate = simulator_of(spec)
    folds = spec.get("folds")
    fold_key, fold_values = next(iter(folds.items())) if folds else (None, [None])
    result, errors = [], []
    for s, overrides in enumerate(parameter_sets(spec)):
        for f, value in enumerate(fold_values):
            p = dict(spec.get("base") or {}, **overrides)
            if fold_key is not None:
                p[fold_key] = value
            try:
                p = validate(p) if validate is not None else p
            except (KeyError, ValueError, TypeError) as error:
                errors.append(f"set {s} {json.dumps(overrides, default=str)}: "
                              f"{_error_text(error)}")
                break
            what = {"simulator": module_name, "class": class_name, "method": spec["method"],
                    "parameters": {k: v for k, v in p.items()
                                   if k not in SET_BY_SWEEP and k != fold_key}}
            set_id = identity(what)
            task_id = identity(dict(what, fold=[fold_key, value]))
            folder = os.path.join(out_dir, f"set-{set_id}", f"task-{task_id}")
            p.update(OUT_DIR=folder, NAME="run", PROGRESS=False)
            result.append({"set": s, "fold": f, "set_id": set_id, "task_id": task_id,
                           "folder": folder, "p": p, "overrides": overrides,
                           "fold_value": value})
    if errors:
        raise InvalidSweep(f"{len(errors)} invalid parameter set(s) in the sweep; nothing was "
                           "submitted:\n  " + "\n  ".join(errors))
    return result


# --- one task ------------------------------------------------------------------------------------

def read_task_file(folder):
    """The task.json of a task folder as a dict (None when missing or unreadable)."""
    path = os.path.join(folder, "task.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _best_eval_accuracy(folder):
    """Highest evaluation accuracy of any epoch in the task's logs (nan without evaluation)."""
    values = [value for name in sorted(os.listdir(folder)) if name.endswith("_log.jsonl")
              for record in storage.load_epoch_log(os.path.join(folder, name))
              for key, value in record.items()
              if key.endswith("_acc") and not key.startswith("train")]
    return float(max(values)) if values else float("nan")


def _select_gpu():
    """On a worker of a local cluster with GPUs: use one of them (by worker name)."""
    try:
        from distributed import get_worker
        name = get_worker().name
    except (ImportError, ValueError):
        return
    gpus = os.environ.get(GPUS_VARIABLE)
    if gpus and isinstance(name, int):
        ids = gpus.split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[name % len(ids)]


def workers_sharing_cores():
    """How many sweep workers share the cores this process may use: the count the sweep gave
    its workers (``EVENTPROP_SWEEP_WORKERS``), else the workers the scheduler knows on this
    host, else 1 (not on a Dask worker)."""
    given = os.environ.get(WORKERS_VARIABLE)
    if given:
        return int(given)
    from distributed import get_worker
    try:
        worker = get_worker()
    except ValueError:
        return 1
    host = worker.address.rsplit(":", 1)[0]
    workers = worker.client.scheduler_info(n_workers=-1)["workers"]
    return max(1, sum(address.rsplit(":", 1)[0] == host for address in workers))


def use_shared_cores():
    """Let this task's numba engine use its share of the allowed cores; returns the threads."""
    return threads.use_threads(max(1, threads.allowed_cores() // workers_sharing_cores()))


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _clear_folder(folder):
    """Remove every file of an earlier attempt (all but task.json)."""
    for name in os.listdir(folder):
        if name == "task.json":
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def run_task(module_name, class_name, method, task):
    """Run one task in its folder (``module_name``: the module to import) as a new attempt,
    after clearing the files of any earlier one; returns its record (also in task.json). A task
    whose task.json already says "done" is not run again."""
    folder = task["folder"]
    os.makedirs(folder, exist_ok=True)
    task_file = os.path.join(folder, "task.json")
    earlier = read_task_file(folder) or {}
    if earlier.get("status") == "done" and earlier.get("task_id") == task["task_id"]:
        return earlier
    attempts = earlier.get("attempts", [])
    for dead in (a for a in attempts if a["status"] == "running"):
        dead["status"] = "interrupted"          # its process died; the task restarts clean
    _clear_folder(folder)
    _select_gpu()
    attempt = {"started": _now(), "ended": None, "host": socket.gethostname(),
               "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
               "threads": use_shared_cores(), "status": "running", "error": None}
    record = {"task_id": task["task_id"], "set_id": task["set_id"], "set": task["set"],
              "fold": task["fold"], "simulator": module_name, "class": class_name,
              "method": method, "overrides": task["overrides"],
              "fold_value": task["fold_value"], "parameters": task["p"], "status": "running",
              "attempts": attempts + [attempt]}
    storage.save_json(task_file, record)
    timer = storage.Timer()
    try:
        module = importlib.import_module(module_name)
        model = getattr(module, class_name)(task["p"])
        out = getattr(model, method)(task["p"])
        if method == "cross_validate":
            train_acc, eval_acc = np.mean(np.asarray(out[0], dtype=float), axis=0)
        else:
            train_acc, eval_acc = out[-2], out[-1]
        record.update(status="done", final_train_acc=float(train_acc),
                      final_eval_acc=float(eval_acc),
                      best_eval_acc=_best_eval_accuracy(folder))
    except Exception:
        text = traceback.format_exc()
        storage.save_text(os.path.join(folder, "error.txt"), text)
        record.update(status="failed", error=text)
        attempt["error"] = text
    record["seconds"] = timer()
    attempt.update(ended=_now(), status=record["status"])
    storage.save_json(task_file, record)
    return record


# --- the cluster ---------------------------------------------------------------------------------

def count_gpus():
    """GPUs on this machine (CUDA_VISIBLE_DEVICES when set, else nvidia-smi); 0 without."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([x for x in visible.split(",") if x.strip()])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def default_local_workers():
    """Workers of a local sweep without GPUs: Dask's split of the allowed cores into processes
    (all of them up to 4 cores, about their square root beyond); the cores are then shared
    among the workers' numba threads."""
    from distributed.deploy.local import nprocesses_nthreads
    return nprocesses_nthreads(threads.allowed_cores())[0]


def make_client(cluster=None, workers=None, scheduler=None):
    """A dask.distributed Client for the sweep's "cluster" entry:

    * {"address": "tcp://host:8786"} or ``scheduler``: connect to a running scheduler;
    * {"type": "local"} (default): a LocalCluster on this machine with one worker per GPU when
      GPUs exist, otherwise ``default_local_workers()`` (``workers`` overrides); the workers
      share the allowed cores;
    * {"type": "slurm" | "pbs", "jobs": N, ...}: dask-jobqueue's SLURMCluster / PBSCluster with
      the other entries as its arguments (cores, memory, queue, walltime, job_extra_directives,
      ...), scaled to N jobs. A job runs ``processes`` workers (default 1), each one task at a
      time, and they share the job's cores.
    """
    from distributed import Client, LocalCluster
    cluster = dict(cluster or {})
    address = scheduler or cluster.pop("address", None)
    if address:
        return Client(address)
    kind = cluster.pop("type", "local")
    if kind == "local":
        gpus = count_gpus()
        n = workers or gpus or default_local_workers()
        env = {WORKERS_VARIABLE: str(n)}
        if gpus:
            env[GPUS_VARIABLE] = (os.environ.get("CUDA_VISIBLE_DEVICES") or
                                  ",".join(map(str, range(gpus))))
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=env,
                             dashboard_address=cluster.pop("dashboard_address", ":0"),
                             **cluster)
        return Client(local)
    if kind in ("slurm", "pbs"):
        import dask_jobqueue
        jobs = cluster.pop("jobs", workers or 1)
        processes = cluster.setdefault("processes", 1)
        cluster["worker_extra_args"] = [*cluster.get("worker_extra_args", []), "--nthreads", "1"]
        cluster["job_script_prologue"] = [*cluster.get("job_script_prologue", []),
                                          f"export {WORKERS_VARIABLE}={processes}"]
        make = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
        jq = make(**cluster)
        jq.scale(jobs=jobs)
        return Client(jq)
    raise ValueError(f"sweep cluster type {kind!r} not in ('local', 'slurm', 'pbs')")


# --- the sweep -----------------------------------------------------------------------------------

def run_sweep(source, out_dir=None, client=None, workers=None, scheduler=None, progress=True):
    """Run every unfinished task of a sweep on Dask and write the summaries. Returns the list
    of the sweep's task records (the finished ones read from their task.json). Raises
    ``InvalidSweep`` before submitting anything when a parameter set is invalid."""
    from distributed import as_completed
    spec = load_spec(source)
    out_dir = out_dir or spec["out_dir"]
    module_name, class_name, _ = simulator_of(spec)
    all_tasks = tasks(spec, out_dir)
    # task_id -> record of the finished tasks, task_id -> task of the others (a set that the
    # sweep gives twice is one task, run once)
    records, todo = {}, {}
    for task in all_tasks:
        found = read_task_file(task["folder"])
        if found is not None and found.get("status") == "done" and \
                found.get("task_id") == task["task_id"]:
            records[task["task_id"]] = found
        else:
            todo.setdefault(task["task_id"], task)
    if todo:
        own_client = client is None
        if own_client:
            client = make_client(spec.get("cluster"), workers, scheduler)
        try:
            futures = [client.submit(run_task, module_name, class_name, spec["method"], task,
                                     key=f"sweep-task-{task['task_id']}-{uuid.uuid4().hex[:8]}",
                                     retries=spec.get("retries", 1), pure=False)
                       for task in todo.values()]
            bar = tqdm(total=len(records) + len(todo), initial=len(records), desc="tasks",
                       disable=not progress, dynamic_ncols=True)
            for future in as_completed(futures):
                record = future.result()
                records[record["task_id"]] = record
                bar.update(1)
                if record["status"] == "failed":
                    tqdm.write(f"task set {record['set']} fold {record['fold']} "
                               f"({record['task_id']}) failed:\n{record['error']}")
            bar.close()
        finally:
            if own_client:
                cluster = client.cluster
                client.close()
                if cluster is not None:
                    cluster.close()
    ordered = [dict(records[t["task_id"]], set=t["set"], fold=t["fold"],
                    overrides=t["overrides"], folder=t["folder"]) for t in all_tasks]
    storage.save_json(os.path.join(out_dir, "sweep.json"), spec)
    write_summaries(ordered, out_dir)
    failed = sum(r["status"] != "done" for r in ordered)
    if progress:
        where = os.path.join(out_dir, "summary_sets.csv")
        if not todo:
            print(f"all {len(ordered)} tasks done; summaries rewritten in {where}")
        else:
            print(f"{len(ordered) - failed} of {len(ordered)} tasks done, {failed} failed; "
                  f"summary in {where}")
    return ordered


def _csv_text(rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                         for k, v in row.items()})
    return buffer.getvalue()


def write_summaries(records, out_dir):
    """summary.csv (a row per task) and summary_sets.csv (a row per parameter set, mean and
    std over its finished folds), both with the swept parameters as columns, and each set's
    set.json (overrides and full parameters) in its folder."""
    swept = sorted({k for r in records for k in r["overrides"]})
    metrics = ("final_train_acc", "final_eval_acc", "best_eval_acc")
    rows = []
    for r in records:
        row = {"set": r["set"], "fold": r["fold"], "status": r["status"],
               "fold_value": r["fold_value"], "seconds": round(r.get("seconds", 0.0), 3),
               "task_id": r["task_id"], "folder": os.path.relpath(r["folder"], out_dir)}
        row.update({k: r["overrides"].get(k) for k in swept})
        row.update({m: r.get(m) for m in metrics})
        rows.append(row)
    columns = ["set", "fold", "fold_value", "status", *swept, *metrics, "seconds", "task_id",
               "folder"]
    storage.save_text(os.path.join(out_dir, "summary.csv"), _csv_text(rows, columns))
    per_set = []
    for s in sorted({r["set"] for r in records}):
        mine = [r for r in records if r["set"] == s]
        done = [r for r in mine if r["status"] == "done"]
        row = {"set": s, "set_id": mine[0]["set_id"], "n_folds": len(mine),
               "n_done": len(done)}
        row.update({k: mine[0]["overrides"].get(k) for k in swept})
        for m in metrics:
            values = np.array([r[m] for r in done], dtype=float)
            some = len(values) and not np.all(np.isnan(values))
            row[f"{m}_mean"] = float(np.nanmean(values)) if some else ""
            row[f"{m}_std"] = float(np.nanstd(values)) if some else ""
        per_set.append(row)
        parameters = {k: v for k, v in mine[0]["parameters"].items() if k not in SET_BY_SWEEP}
        storage.save_json(os.path.join(os.path.dirname(mine[0]["folder"]), "set.json"),
                          {"set_id": mine[0]["set_id"], "overrides": mine[0]["overrides"],
                           "parameters": parameters})
    columns = ["set", "set_id", "n_folds", "n_done", *swept,
               *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]]
    storage.save_text(os.path.join(out_dir, "summary_sets.csv"), _csv_text(per_set, columns))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="eventprop sweep",
                                     description="Run a parameter sweep on Dask.")
    parser.add_argument("sweep", help="sweep file (.json, .yaml)")
    parser.add_argument("--out", default=None, help="output folder (default: the file's out_dir)")
    parser.add_argument("--workers", type=int, default=None, help="local workers")
    parser.add_argument("--scheduler", default=None, help="address of a running scheduler")
    args = parser.parse_args(argv)
    try:
        records = run_sweep(args.sweep, args.out, workers=args.workers, scheduler=args.scheduler)
    except InvalidSweep as error:
        print(f"eventprop sweep: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(1 if any(r["status"] != "done" for r in records) else 0)


if __name__ == "__main__":
    main()
