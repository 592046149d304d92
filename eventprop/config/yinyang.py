"""Parameters of the Yin-Yang simulator (``eventprop.simulators.yinyang``): every key of its
``p``, in order, as a shared key of ``eventprop.config.shared`` (with this simulator's default
where it differs) or as a key of its own."""
from eventprop.config import checks
from eventprop.config.parameter import Parameter as P, shared
from eventprop.config.parameters import resolve

# the keys of p, in order: shared(), shared(default=...) or P(default, rule, meaning, unit)
TABLE = {
    "OUT_DIR": shared(),
    "NAME": shared(),
    "DT_MS": shared(default=0.1),
    "BUILD": shared(),
    "TIMING": shared(),
    "TRAIN_DATA_SEED": shared(),
    "TEST_DATA_SEED": shared(),
    "MODEL_SEED": shared(),
    "TRIAL_MS": shared(default=30.0),
    "N_MAX_SPIKE": shared(default=400),
    "N_BATCH": shared(),
    "N_TRAIN": P(32000, checks.integer_at_least(1),
                 "one third of the number of training samples (3·N_TRAIN are generated)", ""),
    "N_EPOCH": shared(default=10),
    "N_TEST": P(800, checks.integer_at_least(1),
                "one third of the number of test samples (3·N_TEST are generated)", ""),
    "NUM_HIDDEN": shared(default=100),     # the original README says 200; its code 100
    "TAU_SYN": shared(),
    "TAU_MEM": shared(),
    "V_THRESH": shared(),
    "V_RESET": shared(),
    "LOSS_TYPE": shared(default="first_spike"),
    "TAU_0": shared(default=0.5),
    "TAU_1": shared(default=6.4),
    "ALPHA": shared(default=0.003),
    "INPUT_HIDDEN_MEAN": shared(default=1.5),
    "INPUT_HIDDEN_STD": shared(default=0.78),
    "HIDDEN_OUTPUT_MEAN": shared(default=0.93),
    "HIDDEN_OUTPUT_STD": shared(default=0.1),
    "ETA": shared(default=0.005),
    "ADAM_BETA1": shared(),
    "ADAM_BETA2": shared(),
    "ADAM_EPS": shared(),
    "PIPELINE": shared(),
    "ETA_DECAY": P(0.95, checks.positive,
                   "learning rate × ETA_DECAY at the start of every epoch", ""),
    "PDROP": P(0.0, checks.probability,
               "hidden \"dropout\": a threshold crossing is ignored with this probability (V "
               "is not reset, so the spike is delayed)", ""),
    "SHUFFLE": shared(default=False),
    "REWIRE_SILENT": shared(),
    "REWIRE_LIFT": shared(),
    "REWIRE_LIFT_SILENT_ONLY": shared(default=True),     # SHD: False (the original)
    "N_FOLDS": shared(),
    "FOLDS": shared(),
    "DTYPE": shared(),
    "BACKEND": shared(),
    "REC_SPIKES": shared(),
    "REC_NEURONS": shared(),
    "REC_SYNAPSES": shared(),
    "REC_EPOCH_TRIAL": P([], checks.list_of_pairs,
                         "[epoch, trial] pairs to record (empty: every trial)", ""),
    "WRITE_TO_DISK": shared(),
    "LOAD_LAST": shared(),
    "LOAD_BEST": shared(),
    "CHECKPOINT_NAME": shared(),
    "CHECKPOINT": shared(),
    "CHECKPOINT_BEST": shared(),
    "W_REPORT_INTERVAL": P(100, checks.integer_at_least(1),
                           "weight snapshots every this many trials of the epochs of "
                           "W_EPOCH_INTERVAL", ""),
    "W_EPOCH_INTERVAL": P(10, checks.integer_at_least(1),
                          "weight snapshots in every this many-th epoch", ""),
    "PROGRESS": shared(),
}

PARAMETERS = resolve(TABLE)
