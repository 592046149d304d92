"""Train on SHD or SSC: edit p below, or choose a preset and override keys on the command line.

    python train_SHD.py --data DATA_DIR                       # module defaults, train_test
    python train_SHD.py --data DATA_DIR --preset paper_SHD    # the paper's best SHD setting
    python train_SHD.py --data DATA_DIR --preset paper_SSC --method train
    python train_SHD.py --data DATA_DIR --method test LOAD_BEST=true CHECKPOINT_NAME='"ssc"'
    python train_SHD.py --data DATA_DIR NUM_HIDDEN=512 AUGMENTATION='{"random_shift": 40}'

DATA_DIR holds SHD/shd_train.h5 and SHD/shd_test.h5 (SSC/ssc_{train,valid,test}.h5 for SSC); see
README. KEY=VALUE pairs are read as JSON (true, 0.5, [0, 1], "text"); a value that is not JSON
is taken as a string. Methods: train_test (train on the training file, test after every epoch),
train (validation per EVALUATION), test (one epoch on the test file), cross_validate
(leave-one-speaker-out over SPEAKER_LEFT).
"""
import argparse
import json

from simulator_SHD import PRESETS, SHD_model, p


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--data", default="data", help="DATA_DIR (default: data)")
parser.add_argument("--out", default=None, help="OUT_DIR (default: out/<NAME>)")
parser.add_argument("--name", default=None, help="NAME (default: the preset, or 'shd')")
parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
parser.add_argument("--method", default="train_test",
                    choices=["train_test", "train", "test", "cross_validate"])
parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
args = parser.parse_args()

if args.preset:
    p.update(PRESETS[args.preset])
p["DATA_DIR"] = args.data
p["NAME"] = args.name or args.preset or "shd"
p["OUT_DIR"] = args.out or f"out/{p['NAME']}"
for item in args.overrides:
    key, sep, value = item.partition("=")
    if not sep:
        parser.error(f"expected KEY=VALUE, got {item!r}")
    p[key] = parse_value(value)

model = SHD_model(p)
if args.method == "cross_validate":
    accuracies, seconds = model.cross_validate(p)
    for index, (train_acc, eval_acc) in zip(p["SPEAKER_LEFT"], accuracies):
        print(f"speaker {index}: training accuracy {train_acc:.4f}, validation {eval_acc:.4f}")
else:
    *_, train_acc, eval_acc = getattr(model, args.method)(p)
    print(f"{args.method}: final training accuracy {train_acc:.4f}, evaluation accuracy "
          f"{eval_acc:.4f}; results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
