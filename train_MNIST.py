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

from eventprop.tools.cli import apply_command_line, run_method
from simulator_MNIST import PRESETS, mnist_model, p

# Edit p here (e.g. p["NUM_HIDDEN"] = 512); --preset and KEY=VALUE pairs from the command line
# are applied on top, and --data, --name and --out set DATA_DIR, NAME and OUT_DIR.
method = apply_command_line(p, __doc__.split("\n")[0], "mnist", PRESETS)
run_method(mnist_model(p), method, p)
