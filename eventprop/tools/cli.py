"""The command line: the ``eventprop`` console command and the options of the train_*.py scripts.

    eventprop train BENCHMARK [--data DATA_DIR] [--out OUT_DIR] [--name NAME] [--preset NAME]
                              [--method train_test|train|test|cross_validate] [KEY=VALUE ...]
    eventprop sweep SWEEP_FILE [--out DIR] [--workers N] [--scheduler ADDRESS]
    eventprop figures FOLDER [--out DIR]

BENCHMARK is one of yinyang, mnist, shd (SHD and SSC: DATA_SET), dvs_gesture, smnist.
``python train_X.py [options]`` takes the same options as ``eventprop train X``.

KEY=VALUE pairs are read as JSON (true, 0.5, [0, 1], "text"); a value that is not JSON is taken
as a string. Unknown keys and invalid values are reported by the simulator, naming the key.
"""
import argparse
import importlib
import json
import sys

METHODS = ("train_test", "train", "test", "cross_validate")
EVALUATION_PART = {"train": "validation", "train_test": "test", "test": "test"}


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# benchmark -> (module of eventprop.simulators, its model class, default NAME, description)
BENCHMARKS = {
    "yinyang": ("yinyang", "yinyang", "yinyang", "Train on Yin-Yang (generated, no data files)."),
    "mnist": ("mnist", "mnist_model", "mnist", "Train on MNIST (latency-coded images)."),
    "shd": ("shd", "SHD_model", "shd", "Train on SHD or SSC (DATA_SET)."),
    "dvs_gesture": ("dvs_gesture", "DVS_gesture_model", "dvs_gesture",
                    "Train on the DVS128 gesture data set."),
    "smnist": ("smnist", "SMNIST_model", "smnist", "Train on sequential MNIST."),
}


def apply_command_line(p, description, default_name, presets=None, argv=None, prog=None):
    """Update ``p`` in place from the command line (preset first, then DATA_DIR, NAME, OUT_DIR,
    then the KEY=VALUE pairs); returns the method to run."""
    presets = presets or {}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    has_data = "DATA_DIR" in p               # Yin-Yang generates its data
    if has_data:
        parser.add_argument("--data", default="data", help="DATA_DIR (default: data)")
    parser.add_argument("--out", default=None, help="OUT_DIR (default: out/<NAME>)")
    parser.add_argument("--name", default=None,
                        help=f"NAME (default: the preset, or {default_name!r})")
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None)
    parser.add_argument("--method", default="train_test", choices=METHODS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    preset = getattr(args, "preset", None)
    if preset:
        p.update(presets[preset])
    if has_data:
        p["DATA_DIR"] = args.data
    p["NAME"] = args.name or preset or default_name
    p["OUT_DIR"] = args.out or f"out/{p['NAME']}"
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected KEY=VALUE, got {item!r}")
        p[key] = parse_value(value)
    return args.method


def run_method(model, method, p):
    """Run ``method`` of the simulator ``model`` with ``p`` and print its final accuracies."""
    if method == "cross_validate":
        accuracies, seconds = model.cross_validate(p)
        for k, ((train_acc, eval_acc), s) in enumerate(zip(accuracies, seconds)):
            print(f"fold {k}: training accuracy {train_acc:.4f}, validation {eval_acc:.4f} "
                  f"({s:.0f} s)")
        return accuracies
    *_, train_acc, eval_acc = getattr(model, method)(p)
    print(f"{method}: final training accuracy {train_acc:.4f}, {EVALUATION_PART[method]} "
          f"accuracy {eval_acc:.4f}; results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
    return train_acc, eval_acc


def train(benchmark, argv=None):
    """``eventprop train BENCHMARK ...``: the module defaults of the benchmark's simulator, the
    command line applied on top, then the method; returns what ``run_method`` returns."""
    module_name, class_name, default_name, description = BENCHMARKS[benchmark]
    module = importlib.import_module(f"eventprop.simulators.{module_name}")
    p = dict(module.p)
    method = apply_command_line(p, description, default_name, getattr(module, "PRESETS", None),
                                argv, prog=f"eventprop train {benchmark}")
    return run_method(getattr(module, class_name)(p), method, p)


def main(argv=None):
    """The ``eventprop`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": "train a benchmark", "sweep": "run a parameter sweep (eventprop.tools.sweep)",
                "figures": "draw the figures of a results folder (eventprop.tools.figures)"}
    usage = "eventprop {train BENCHMARK,sweep SWEEP_FILE,figures FOLDER} [options]"
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        lines = [f"usage: {usage}", "", "commands:"]
        lines += [f"  {name:8s} {text}" for name, text in commands.items()]
        lines += ["", f"benchmarks: {', '.join(BENCHMARKS)}",
                  "'eventprop COMMAND --help' gives the options of a command."]
        text = "\n".join(lines)
        if argv and argv[0] in ("-h", "--help"):
            print(text)
            return 0
        print(text + (f"\n\nunknown command {argv[0]!r}" if argv else ""), file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "sweep":
        from eventprop.tools import sweep
        return sweep.main(rest)
    if command == "figures":
        from eventprop.tools import figures
        return figures.main(rest)
    if not rest or rest[0] not in BENCHMARKS:
        print(f"usage: eventprop train BENCHMARK [options]; BENCHMARK one of "
              f"{', '.join(BENCHMARKS)}" + (f" (got {rest[0]!r})" if rest else ""),
              file=sys.stderr)
        return 2
    train(rest[0], rest[1:])
    return 0
