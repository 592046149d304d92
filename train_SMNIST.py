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

from eventprop.tools.cli import apply_command_line, run_method
from simulator_SMNIST import SMNIST_model, p

# Edit p here (e.g. p["NUM_HIDDEN"] = 512); --preset and KEY=VALUE pairs from the command line
# are applied on top, and --data, --name and --out set DATA_DIR, NAME and OUT_DIR.
method = apply_command_line(p, __doc__.split("\n")[0], "smnist")
run_method(SMNIST_model(p), method, p)
