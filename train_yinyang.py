"""Train the Yin-Yang benchmark with the default parameters and report the test accuracy of every
epoch. Edit p below (or pass OUT_DIR on the command line) and run:  python train_yinyang.py [OUT_DIR]
"""
import sys

from simulator_yinyang import p, yinyang

p["OUT_DIR"] = sys.argv[1] if len(sys.argv) > 1 else "out/yinyang"
p["NAME"] = "yinyang"
p["MODEL_SEED"] = 1

model = yinyang(p)
spike_t, spike_ID, rec_vars_n, rec_vars_s, train_acc, test_acc = model.train_test(p)
print(f"final training accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}; "
      f"results in {p['OUT_DIR']}/{p['NAME']}_results.txt")
