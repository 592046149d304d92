"""Train the Yin-Yang benchmark and report the test accuracy of every epoch.

    python train_yinyang.py [OUT_DIR [MODEL_SEED]]

The module defaults of simulator_yinyang reproduce the original code's defaults, which do not train
stably (see BENCHMARKS.md). The settings below start from those of the original repository's
tuned Yin-Yang script (batch 512, about 5120 training samples, Adam with beta2 = 0.99,
ALPHA = 0.1, slow learning-rate decay), with the module's 0.1 ms time step, a new sample order
every epoch, 300 epochs, Adam's epsilon 1e-5 instead of 1e-8 and input weights of mean 2.0
instead of 1.5.
As for SHD in the paper, the weights of the epoch with the best training accuracy (checkpoint
"best") are tested at the end, next to those of the last epoch: late in training the test
accuracy moves by a percent or more from epoch to epoch. Edit p below to try others.
"""
import sys

from simulator_yinyang import p, yinyang

p["OUT_DIR"] = sys.argv[1] if len(sys.argv) > 1 else "out/yinyang"
p["NAME"] = "yinyang"
p["MODEL_SEED"] = int(sys.argv[2]) if len(sys.argv) > 2 else 1
p["DT_MS"] = 0.1
p["N_BATCH"] = 512
p["N_TRAIN"] = 1707         # 3 * 1707 = 5121 training samples
p["N_TEST"] = 800           # 2400 test samples
p["N_EPOCH"] = 300
p["ETA"] = 3e-3
p["ETA_DECAY"] = 0.998
p["ADAM_BETA2"] = 0.99
p["ADAM_EPS"] = 1e-5
p["INPUT_HIDDEN_MEAN"] = 2.0
p["LOSS_TYPE"] = "first_spike"
p["ALPHA"] = 0.1
p["SHUFFLE"] = True
p["CHECKPOINT_BEST"] = "training"

model = yinyang(p)
*_, train_acc, test_acc = model.train_test(p)
best_p = dict(p, NAME="yinyang_best_test", CHECKPOINT_NAME="yinyang", LOAD_BEST=True)
best_test_acc = model.test(best_p)[-1]
with open(f"{p['OUT_DIR']}/yinyang_best.txt") as f:
    best_epoch = f.read().split()[0]
print(f"last epoch: training accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")
print(f"epoch {best_epoch} (counted from 0; best training accuracy): test accuracy "
      f"{best_test_acc:.4f}")
print(f"results in {p['OUT_DIR']}/yinyang_results.txt")
