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

from eventprop.tools.cli import apply_command_line, run_method
from simulator_DVS_gesture import DVS_gesture_model, p

# Edit p here (e.g. p["NUM_HIDDEN"] = 512); --preset and KEY=VALUE pairs from the command line
# are applied on top, and --data, --name and --out set DATA_DIR, NAME and OUT_DIR.
method = apply_command_line(p, __doc__.split("\n")[0], "dvs")
run_method(DVS_gesture_model(p), method, p)
