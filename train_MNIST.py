"""Train on MNIST: edit p below, or choose a preset and override keys on the command line.

    python train_MNIST.py --data DATA_DIR                    # module defaults, train_test
    python train_MNIST.py --data DATA_DIR --preset paper     # the original's comparison settings
    python train_MNIST.py --data DATA_DIR --method train LOSS_TYPE='"first_spike_exp"'
    python train_MNIST.py --data DATA_DIR --method test LOAD_LAST=true
    python train_MNIST.py --data DATA_DIR NUM_HIDDEN=256 REDUCED_CLASSES=[0,1]

DATA_DIR holds MNIST/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
t10k-labels-idx1-ubyte (plain or .gz); see README. KEY=VALUE pairs are read as JSON (true, 0.5,
[0, 1], "text"); a value that is not JSON is taken as a string. Methods: train_test (train on
N_TRAIN training images, test after every epoch), train (validation on N_VALIDATE others), test
(one epoch on the test images), cross_validate (N_FOLDS folds of N_TRAIN + N_VALIDATE images).
"""
import argparse
import json

from simulator_MNIST import PRESETS, mnist_model, p


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--data", default="data", help="DATA_DIR (default: data)")
parser.add_argument("--out", default=None, help="OUT_DIR (default: out/<NAME>)")
parser.add_argument("--name", default=None, help="NAME (default: the preset, or 'mnist')")
parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
parser.add_argument("--method", default="train_test",
                    choices=["train_test", "train", "test", "cross_validate"])
parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
args = parser.parse_args()

if args.preset:
    p.update(PRESETS[args.preset])
p["DATA_DIR"] = args.data
p["NAME"] = args.name or args.preset or "mnist"
p["OUT_DIR"] = args.out or f"out/{p['NAME']}"
for item in args.overrides:
    key, sep, value = item.partition("=")
    if not sep:
        parser.error(f"expected KEY=VALUE, got {item!r}")
    p[key] = parse_value(value)

model = mnist_model(p)
if args.method == "cross_validate":
    accuracies, seconds = model.cross_validate(p)
    for k, (train_acc, eval_acc) in enumerate(accuracies):
        print(f"fold {k}: training accuracy {train_acc:.4f}, validation {eval_acc:.4f}")
else:
    *_, train_acc, eval_acc = getattr(model, args.method)(p)
    part = {"train": "validation", "train_test": "test", "test": "test"}[args.method]
    print(f"{args.method}: final training accuracy {train_acc:.4f}, {part} accuracy "
          f"{eval_acc:.4f}; results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
