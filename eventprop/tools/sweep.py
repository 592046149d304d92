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

Task (s, f) runs ``method`` of the simulator with p = base + set s + fold value f, in its own
folder ``out_dir/set{s:03d}/fold{f:02d}`` (OUT_DIR there, NAME "run"), and writes ``task.json``
(status, accuracies, seconds, parameters) when it ends. Running the sweep again skips the tasks
whose task.json says "done"; failed tasks are run again. A task that raises is reported with its
traceback (in the folder's ``error.txt``) and the others go on; a task whose worker dies is
retried on another worker by Dask. At the end ``summary.csv`` (one row per task) and
``summary_sets.csv`` (one row per parameter set: mean and std over its folds) are written.

    python sweep.py SWEEP_FILE [--out DIR] [--workers N] [--scheduler ADDRESS]
"""
import argparse
import csv
import importlib
import io
import itertools
import json
import os
import shutil
import subprocess
import traceback

import numpy as np
from tqdm import tqdm

from eventprop import storage

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


def tasks(spec, out_dir=None):
    """Every task: dict(set, fold, folder, p)."""
    out_dir = out_dir or spec["out_dir"]
    folds = spec.get("folds")
    fold_key, fold_values = next(iter(folds.items())) if folds else (None, [None])
    result = []
    for s, overrides in enumerate(parameter_sets(spec)):
        for f, value in enumerate(fold_values):
            p = dict(spec.get("base") or {}, **overrides)
            if fold_key is not None:
                p[fold_key] = value
            folder = os.path.join(out_dir, f"set{s:03d}", f"fold{f:02d}")
            p.update(OUT_DIR=folder, NAME="run", PROGRESS=False)
            result.append({"set": s, "fold": f, "folder": folder, "p": p,
                           "overrides": overrides, "fold_value": value})
    return result


# --- one task ------------------------------------------------------------------------------------

def _status(folder):
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
    """On a worker of a machine with GPUs: make this worker use one of them (by worker name)."""
    try:
        from distributed import get_worker
        name = get_worker().name
    except (ImportError, ValueError):
        return
    gpus = os.environ.get("SWEEP_GPUS")
    if gpus and isinstance(name, int):
        ids = gpus.split(",")
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[name % len(ids)]


def run_task(module_name, class_name, method, task):
    """Run one task in its folder (``module_name``: the module to import); returns its record
    (also written to task.json)."""
    _select_gpu()
    folder = task["folder"]
    os.makedirs(folder, exist_ok=True)
    timer = storage.Timer()
    record = {"set": task["set"], "fold": task["fold"], "overrides": task["overrides"],
              "fold_value": task["fold_value"], "parameters": task["p"]}
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
    record["seconds"] = timer()
    storage.save_json(os.path.join(folder, "task.json"), record)
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


def make_client(cluster=None, workers=None, scheduler=None):
    """A dask.distributed Client for the sweep's "cluster" entry:

    * {"address": "tcp://host:8786"} or ``scheduler``: connect to a running scheduler;
    * {"type": "local"} (default): a LocalCluster on this machine with one worker per GPU when
      GPUs exist, otherwise one single-threaded worker per core (``workers`` overrides);
    * {"type": "slurm" | "pbs", "jobs": N, ...}: dask-jobqueue's SLURMCluster / PBSCluster with
      the other entries as its arguments (cores, memory, queue, walltime, job_extra_directives,
      ...), scaled to N jobs.
    """
    from distributed import Client, LocalCluster
    cluster = dict(cluster or {})
    address = scheduler or cluster.pop("address", None)
    if address:
        return Client(address)
    kind = cluster.pop("type", "local")
    if kind == "local":
        here = os.path.dirname(os.path.abspath(__file__))    # workers import the simulators
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [here] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x])
        gpus = count_gpus()
        if gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(gpus)))
            os.environ["SWEEP_GPUS"] = visible
        n = workers or gpus or os.cpu_count() or 1
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                             dashboard_address=cluster.pop("dashboard_address", None),
                             **cluster)
        return Client(local)
    if kind in ("slurm", "pbs"):
        import dask_jobqueue
        jobs = cluster.pop("jobs", workers or 1)
        make = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
        jq = make(**cluster)
        jq.scale(jobs=jobs)
        return Client(jq)
    raise ValueError(f"sweep cluster type {kind!r} not in ('local', 'slurm', 'pbs')")


# --- the sweep -----------------------------------------------------------------------------------

def run_sweep(source, out_dir=None, client=None, workers=None, scheduler=None, progress=True):
    """Run every unfinished task of a sweep on Dask and write the summaries. Returns the list
    of task records (the skipped ones read from their task.json)."""
    from distributed import as_completed
    spec = load_spec(source)
    out_dir = out_dir or spec["out_dir"]
    module_name, known_class = simulator_module(spec["simulator"])
    class_name = spec.get("class") or known_class
    if class_name is None:
        raise ValueError(f"sweep 'class' is needed for simulator {spec['simulator']!r}")
    os.makedirs(out_dir, exist_ok=True)
    storage.save_json(os.path.join(out_dir, "sweep.json"), spec)
    all_tasks = tasks(spec, out_dir)
    records, todo = {}, []
    for task in all_tasks:
        status = _status(task["folder"])
        if status is not None and status.get("status") == "done":
            records[(task["set"], task["fold"])] = status
        else:
            todo.append(task)
    own_client = client is None
    if own_client and todo:
        client = make_client(spec.get("cluster"), workers, scheduler)
    try:
        futures = [client.submit(run_task, module_name, class_name, spec["method"], task,
                                 key=f"sweep-{os.path.abspath(out_dir)}-{task['set']}-"
                                     f"{task['fold']}", retries=spec.get("retries", 1),
                                 pure=False) for task in todo]
        bar = tqdm(total=len(all_tasks), initial=len(records), desc="tasks",
                   disable=not progress, dynamic_ncols=True)
        for future in as_completed(futures):
            record = future.result()
            records[(record["set"], record["fold"])] = record
            bar.update(1)
            if record["status"] == "failed":
                tqdm.write(f"task set{record['set']:03d}/fold{record['fold']:02d} failed:\n"
                           f"{record['error']}")
        bar.close()
    finally:
        if own_client and todo:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [records[(t["set"], t["fold"])] for t in all_tasks]
    write_summaries(ordered, out_dir)
    failed = sum(r["status"] != "done" for r in ordered)
    if progress:
        print(f"{len(ordered) - failed} of {len(ordered)} tasks done, {failed} failed; "
              f"summary in {os.path.join(out_dir, 'summary_sets.csv')}")
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
    std over its finished folds), both with the swept parameters as columns."""
    swept = sorted({k for r in records for k in r["overrides"]})
    metrics = ("final_train_acc", "final_eval_acc", "best_eval_acc")
    rows = []
    for r in records:
        row = {"set": r["set"], "fold": r["fold"], "status": r["status"],
               "fold_value": r["fold_value"], "seconds": round(r.get("seconds", 0.0), 3)}
        row.update({k: r["overrides"].get(k) for k in swept})
        row.update({m: r.get(m) for m in metrics})
        rows.append(row)
    columns = ["set", "fold", "fold_value", "status", *swept, *metrics, "seconds"]
    storage.save_text(os.path.join(out_dir, "summary.csv"), _csv_text(rows, columns))
    per_set = []
    for s in sorted({r["set"] for r in records}):
        mine = [r for r in records if r["set"] == s]
        done = [r for r in mine if r["status"] == "done"]
        row = {"set": s, "n_folds": len(mine), "n_done": len(done)}
        row.update({k: mine[0]["overrides"].get(k) for k in swept})
        for m in metrics:
            values = np.array([r[m] for r in done], dtype=float)
            row[f"{m}_mean"] = float(np.nanmean(values)) if len(values) and \
                not np.all(np.isnan(values)) else ""
            row[f"{m}_std"] = float(np.nanstd(values)) if len(values) and \
                not np.all(np.isnan(values)) else ""
        per_set.append(row)
    columns = ["set", "n_folds", "n_done", *swept,
               *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]]
    storage.save_text(os.path.join(out_dir, "summary_sets.csv"), _csv_text(per_set, columns))
    for s in sorted({r["set"] for r in records}):
        r = next(r for r in records if r["set"] == s)
        storage.save_json(os.path.join(out_dir, f"set{s:03d}", "set.json"),
                        {"overrides": r["overrides"], "parameters": r["parameters"]})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="eventprop sweep",
                                     description="Run a parameter sweep on Dask.")
    parser.add_argument("sweep", help="sweep file (.json, .yaml)")
    parser.add_argument("--out", default=None, help="output folder (default: the file's out_dir)")
    parser.add_argument("--workers", type=int, default=None, help="local workers")
    parser.add_argument("--scheduler", default=None, help="address of a running scheduler")
    args = parser.parse_args(argv)
    records = run_sweep(args.sweep, args.out, workers=args.workers, scheduler=args.scheduler)
    raise SystemExit(1 if any(r["status"] != "done" for r in records) else 0)


if __name__ == "__main__":
    main()
