"""The command line shared by the train_*.py scripts:

    python train_X.py [--data DATA_DIR] [--out OUT_DIR] [--name NAME] [--preset NAME]
                      [--method train_test|train|test|cross_validate] [KEY=VALUE ...]

KEY=VALUE pairs are read as JSON (true, 0.5, [0, 1], "text"); a value that is not JSON is taken
as a string. Unknown keys and invalid values are reported by the simulator, naming the key.
"""
import argparse
import json

METHODS = ("train_test", "train", "test", "cross_validate")
EVALUATION_PART = {"train": "validation", "train_test": "test", "test": "test"}


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_command_line(p, description, default_name, presets=None, argv=None):
    """Update ``p`` in place from the command line (preset first, then DATA_DIR, NAME, OUT_DIR,
    then the KEY=VALUE pairs); returns the method to run."""
    presets = presets or {}
    parser = argparse.ArgumentParser(description=description)
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
