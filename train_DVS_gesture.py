"""Train on DVS128 Gesture: edit p below, or override keys on the command line.

    python train_DVS_gesture.py --data DATA_DIR                      # module defaults, train_test
    python train_DVS_gesture.py --data DATA_DIR --method train       # random validation split
    python train_DVS_gesture.py --data DATA_DIR --method cross_validate N_FOLDS=5
    python train_DVS_gesture.py --data DATA_DIR --method test LOAD_BEST=true CHECKPOINT_NAME='"dvs"'
    python train_DVS_gesture.py --data DATA_DIR TRIAL_MS=3000 AUGMENTATION='{"spatial_shift": 2}'

DATA_DIR holds DVSGesture/ibmGestureTrain/ and DVSGesture/ibmGestureTest/ as tonic unpacks them
(add DOWNLOAD=true to let tonic fetch them); see README. KEY=VALUE pairs are read as JSON (true,
0.5, [0, 1], "text"); a value that is not JSON is taken as a string. Methods: train_test (train on
the training recordings, test after every epoch), train (N_TRAIN / N_VALIDATE random split), test
(one epoch on the test recordings), cross_validate (N_FOLDS folds of the training recordings).
"""
import argparse
import json

from simulator_DVS_gesture import DVS_gesture_model, p


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--data", default="data", help="DATA_DIR (default: data)")
parser.add_argument("--out", default=None, help="OUT_DIR (default: out/<NAME>)")
parser.add_argument("--name", default="dvs", help="NAME (default: dvs)")
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

model = DVS_gesture_model(p)
if args.method == "cross_validate":
    accuracies, seconds = model.cross_validate(p)
    folds = p["FOLDS"] if p["FOLDS"] is not None else range(p["N_FOLDS"])
    for fold, (train_acc, eval_acc) in zip(folds, accuracies):
        print(f"fold {fold}: training accuracy {train_acc:.4f}, validation {eval_acc:.4f}")
else:
    *_, train_acc, eval_acc = getattr(model, args.method)(p)
    print(f"{args.method}: final training accuracy {train_acc:.4f}, evaluation accuracy "
          f"{eval_acc:.4f}; results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
