"""Train on SHD or SSC: edit p below, or choose a preset and override keys on the command line.

    python train_SHD.py --data DATA_DIR                       # module defaults, train_test
    python train_SHD.py --data DATA_DIR --preset paper_SHD    # the paper's best SHD setting
    python train_SHD.py --data DATA_DIR --preset paper_SSC --method train
    python train_SHD.py --data DATA_DIR --preset delays_SHD   # learned delays, 512 recurrent
    python train_SHD.py --data DATA_DIR --preset delays_SSC --method train
    python train_SHD.py --data DATA_DIR --method test LOAD_BEST=true CHECKPOINT_NAME='"ssc"'
    python train_SHD.py --data DATA_DIR NUM_HIDDEN=512 AUGMENTATION='{"random_shift": 40}'

DATA_DIR holds SHD/shd_train.h5 and SHD/shd_test.h5 (SSC/ssc_{train,valid,test}.h5 for SSC); see
README. KEY=VALUE pairs are read as JSON (true, 0.5, [0, 1], "text"); a value that is not JSON
is taken as a string. Methods: train_test (train on the training file, test after every epoch),
train (validation per EVALUATION), test (one epoch on the test file), cross_validate
(leave-one-speaker-out over SPEAKER_LEFT).
"""

from eventprop.tools.cli import apply_command_line, run_method
from simulator_SHD import PRESETS, SHD_model, p

# Edit p here (e.g. p["NUM_HIDDEN"] = 512); --preset and KEY=VALUE pairs from the command line
# are applied on top, and --data, --name and --out set DATA_DIR, NAME and OUT_DIR.
method = apply_command_line(p, __doc__.split("\n")[0], "shd", PRESETS)
run_method(SHD_model(p), method, p)
