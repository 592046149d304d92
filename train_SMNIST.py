"""Train on sequential MNIST: edit p below, or override keys on the command line.

    python train_SMNIST.py --data DATA_DIR                                 # pixel by pixel
    python train_SMNIST.py --data DATA_DIR SMNIST_MODE='"row"' TRIAL_MS=50   # row by row
    python train_SMNIST.py --data DATA_DIR --method train N_EPOCH=20 INPUT_HIDDEN_MEAN=0.1
    python train_SMNIST.py --data DATA_DIR --method test LOAD_LAST=true

DATA_DIR holds the MNIST files in MNIST/ (as for train_MNIST.py; see README). KEY=VALUE pairs are
read as JSON (true, 0.5, [0, 1], "text"); a value that is not JSON is taken as a string. Methods:
train_test (train on N_TRAIN training images, test after every epoch), train (validation on
N_VALIDATE others), test (one epoch on the test images), cross_validate (N_FOLDS folds of
N_TRAIN + N_VALIDATE images).
"""
import argparse
import json

from simulator_SMNIST import SMNIST_model, p


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--data", default="data", help="DATA_DIR (default: data)")
parser.add_argument("--out", default=None, help="OUT_DIR (default: out/<NAME>)")
parser.add_argument("--name", default="smnist", help="NAME (default: smnist)")
parser.add_argument("--method", default="train_test",
                    choices=["train_test", "train", "test", "cross_validate"])
parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
args = parser.parse_args()

p["DATA_DIR"] = args.data
p["NAME"] = args.name
p["OUT_DIR"] = args.out or f"out/{p['NAME']}"
for item in args.overrides:
    key, sep, value = item.partition("=")
    if not sep:
        parser.error(f"expected KEY=VALUE, got {item!r}")
    p[key] = parse_value(value)

model = SMNIST_model(p)
if args.method == "cross_validate":
    accuracies, seconds = model.cross_validate(p)
    for k, (train_acc, eval_acc) in enumerate(accuracies):
        print(f"fold {k}: training accuracy {train_acc:.4f}, validation {eval_acc:.4f}")
else:
    *_, train_acc, eval_acc = getattr(model, args.method)(p)
    part = {"train": "validation", "train_test": "test", "test": "test"}[args.method]
    print(f"{args.method}: final training accuracy {train_acc:.4f}, {part} accuracy "
          f"{eval_acc:.4f}; results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
