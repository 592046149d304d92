"""The parameter keys that mean the same in every simulator that has them: default, rule,
meaning and unit of each.

A simulator takes a key from here with ``shared()`` in its table (``eventprop.config.<simulator>``)
and may give it another default there (``shared(default=...)``); the defaults here are those of
the SHD simulator, the paper's main benchmark. For a key a simulator does not have,
``SHARED[key].default`` is the value that leaves its feature off (``training.build``).
"""
from eventprop import losses
from eventprop.config import checks
from eventprop.config.parameter import Parameter as P

SHARED = {
    # --- files and compatibility --------------------------------------------------------------
    "OUT_DIR": P(".", checks.string, "folder of every file a run writes", ""),
    "NAME": P("test", checks.string, "prefix of those files", ""),
    "DEBUG_HIDDEN_N": P(False, checks.boolean,
                        "hidden-activity columns (per layer) in the results file", ""),
    "BUILD": P(True, checks.boolean,
               "accepted for compatibility; no effect (kernels compile on first use)", ""),
    "TIMING": P(True, checks.boolean,
                "accepted for compatibility; no effect (seconds per epoch are always logged)", ""),
    "PROFILE": P(False, checks.boolean, "accepted for compatibility; no effect", ""),
    "SPK_REC_STEPS": P(None, checks.anything,
                       "accepted for compatibility; recordings have no step limit", ""),
    "DATA_BUFFER_NAME": P(None, checks.anything,
                          "accepted for compatibility; no effect (the cache is in CACHE_DIR)", ""),
    "TEST_ST_INTEGRITY": P(False, checks.anything, "accepted for compatibility; no effect", ""),
    "PROGRESS": P(True, checks.boolean, "progress bar and a line per epoch", ""),
    # --- seeds, time, sizes -------------------------------------------------------------------
    "TRAIN_DATA_SEED": P(123, checks.optional_seed,
                         "seed of the training data's random draws: split, sample order, "
                         "balancing, augmentation, input and hidden dropout and noise", ""),
    "TEST_DATA_SEED": P(456, checks.optional_seed,
                        "seed of the test data (their generation or order)", ""),
    "MODEL_SEED": P(None, checks.optional_seed,
                    "seed of the initial weights, hetLIF/hetLI time constants and rewiring "
                    "(None: random)", ""),
    "DT_MS": P(1.0, checks.positive, "time step (and bin width of recorded data)", "ms"),
    "TRIAL_MS": P(1400.0, checks.positive, "trial length; later input spikes are dropped", "ms"),
    "N_MAX_SPIKE": P(1500, checks.integer_at_least(1),
                     "spikes per neuron and trial kept for the backward pass (more are "
                     "simulated, counted and reported)", ""),
    "N_BATCH": P(32, checks.integer_at_least(1), "mini-batch size", ""),
    "N_TRAIN": P(7644, checks.integer_at_least(1), "training samples of the split", ""),
    "N_VALIDATE": P(512, checks.integer_at_least(0),
                    "validation samples of train's split; 0: no evaluation part", ""),
    "N_TEST": P(10000, checks.integer_at_least(1), "test samples", ""),
    "N_EPOCH": P(100, checks.integer_at_least(0),
                 "epochs of the run (a resumed run stops at the same epoch)", ""),
    "SHUFFLE": P(True, checks.boolean, "a new order of the training samples every epoch", ""),
    "N_FOLDS": P(5, checks.integer_at_least(2), "cross_validate: number of folds", ""),
    "FOLDS": P(None, checks.fold_list,
               "the folds cross_validate runs (None: all; [2]: fold 2 only, as a sweep task does)",
               ""),
    # --- network -----------------------------------------------------------------------------
    "NUM_HIDDEN": P(256, checks.integer_at_least(1), "hidden neurons per layer", ""),
    "RECURRENT": P(False, checks.boolean,
                   "all-to-all recurrent weights within each hidden layer, self-connections "
                   "included", ""),
    "N_HID_LAYER": P(1, checks.integer_at_least(1), "hidden layers", ""),
    "N_INPUT_DELAY": P(0, checks.integer_at_least(0),
                       "delayed copies of the inputs (delay line)", ""),
    "INPUT_DELAY": P(50.0, checks.non_negative, "delay between the copies of the delay line",
                     "ms"),
    "TAU_SYN": P(5.0, checks.positive,
                 "synaptic time constant of hidden and output neurons", "ms"),
    "TAU_MEM": P(20.0, checks.positive,
                 "membrane time constant of hidden and output neurons", "ms"),
    "V_THRESH": P(1.0, checks.number, "threshold potential", ""),
    "V_RESET": P(0.0, checks.number, "reset potential", ""),
    "HIDDEN_NEURON_TYPE": P("LIF", checks.one_of("LIF", "hetLIF", "ALIF"),
                            "hidden neurons: LIF, hetLIF (per-neuron time constants ~ Gamma) or "
                            "ALIF (adaptive threshold)", ""),
    "OUTPUT_NEURON_TYPE": P("LI", checks.one_of("LI", "hetLI"),
                            "output neurons: LI or hetLI (per-neuron time constants); "
                            "first-spike losses use spiking LIF outputs", ""),
    "TAU_B": P(100.0, checks.positive, "ALIF: time constant of the threshold adaptation", "ms"),
    "B_INCR": P(0.1, checks.number, "ALIF: increment of the threshold offset per spike", ""),
    "B_INIT": P(0.0, checks.zero_only, "ALIF: initial threshold offset", ""),
    "INPUT_HIDDEN_MEAN": P(0.02, checks.number,
                           "initial input→hidden weights ~ N(mean, std): mean", ""),
    "INPUT_HIDDEN_STD": P(0.01, checks.non_negative, "initial input→hidden weights: std", ""),
    "HIDDEN_OUTPUT_MEAN": P(0.0, checks.number, "initial hidden→output weights: mean", ""),
    "HIDDEN_OUTPUT_STD": P(0.3, checks.non_negative, "initial hidden→output weights: std", ""),
    "HIDDEN_HIDDEN_MEAN": P(0.0, checks.number, "initial recurrent weights: mean", ""),
    "HIDDEN_HIDDEN_STD": P(0.02, checks.non_negative, "initial recurrent weights: std", ""),
    "HIDDEN_HIDDENFWD_MEAN": P(0.02, checks.number,
                               "initial weights from one hidden layer to the next: mean", ""),
    "HIDDEN_HIDDENFWD_STD": P(0.01, checks.non_negative,
                              "initial weights from one hidden layer to the next: std", ""),
    "DTYPE": P("float32", checks.one_of("float32", "float64"), "floating-point type", ""),
    "BACKEND": P("auto", checks.one_of("cpu", "cuda", "auto"),
                 "auto: the GPU when one is usable, else the CPU; cpu; cuda (an NVIDIA GPU)", ""),
    "CUDA_VISIBLE_DEVICES": P(True, checks.any_truth_value,
                              "on the GPU: True lets the environment variable "
                              "CUDA_VISIBLE_DEVICES choose the GPU; False uses manual_GPU, or "
                              "the GPU with the most free memory", ""),
    # --- dropout, noise, regularisation, rewiring --------------------------------------------
    "PDROP_INPUT": P(0.1, checks.probability,
                     "input dropout: an input spike of a training trial is deleted with this "
                     "probability", ""),
    "PDROP_HIDDEN": P(0.0, checks.probability,
                      "hidden \"dropout\": a threshold crossing is ignored with this probability "
                      "(V is not reset, so the spike is delayed)", ""),
    "HIDDEN_NOISE": P(0.0, checks.non_negative,
                      "membrane noise A of training trials: V += A·ξ·√DT_MS every step, "
                      "ξ ~ N(0, 1)", "1/√ms"),
    "REG_TYPE": P("none", checks.one_of("none", "simple", "Thomas1"),
                  "hidden spike-count regularisation: none, simple (per neuron) or Thomas1 "
                  "(adds a population term)", ""),
    "LBD_UPPER": P(2e-9, checks.non_negative,
                   "simple: strength for a spike count above NU_UPPER", ""),
    "LBD_LOWER": P(2e-9, checks.non_negative,
                   "simple: strength for a spike count at or below NU_UPPER", ""),
    "NU_UPPER": P(14, checks.non_negative,
                  "simple: target spike count per hidden neuron and trial", ""),
    "RHO_UPPER": P(10000.0, checks.non_negative,
                   "Thomas1: hidden spikes per sample and layer above which the population term "
                   "acts", ""),
    "GLB_UPPER": P(1e-8, checks.non_negative, "Thomas1: strength of the population term", ""),
    "AVG_SNSUM": P(False, checks.boolean,
                   "simple: the spike count is averaged over the mini-batch", ""),
    "REWIRE_SILENT": P(False, checks.boolean,
                       "at the end of every training epoch, act on the hidden neurons that did "
                       "not spike, per REWIRE_LIFT", ""),
    "REWIRE_LIFT": P(0.0, checks.number,
                     "≠ 0: add it to the input weights of each hidden layer; 0: redraw the "
                     "silent neurons' input weights", ""),
    "REWIRE_LIFT_SILENT_ONLY": P(False, checks.boolean,
                                 "lift only the silent neurons' input weights (False: all)", ""),
    # --- learning ----------------------------------------------------------------------------
    "ETA": P(1e-3, checks.non_negative,
             "learning rate (at the start of the simulator's schedule)", ""),
    "ADAM_BETA1": P(0.9, checks.probability, "Adam β1", ""),
    "ADAM_BETA2": P(0.999, checks.probability, "Adam β2", ""),
    "ADAM_EPS": P(1e-8, checks.positive, "Adam ε", ""),
    "PIPELINE": P(False, checks.boolean,
                  "the original's schedule: the Adam step after training trial k applies the "
                  "gradient of trial k − 1, computed with the weights after trial k − 1's step "
                  "(a stale gradient); off: each trial's own exact gradient", ""),
    "LR_EASE_IN_FACTOR": P(1.05, checks.positive,
                           "plateau schedule: ease-in factor of the learning rate per trial", ""),
    "EMA_ALPHA1": P(0.8, checks.probability,
                    "plateau schedule: fast moving average of the accuracy", ""),
    "EMA_ALPHA2": P(0.95, checks.probability,
                    "plateau schedule: slow moving average of the accuracy", ""),
    "ETA_FAC": P(0.5, checks.positive,
                 "plateau schedule: factor of each reduction of the learning rate", ""),
    "MIN_EPOCH_ETA_FIXED": P(300, checks.integer_at_least(0),
                             "plateau schedule: epochs without reduction after each reduction "
                             "(and at the start)", ""),
    "EMA_WHICH": P("validation", checks.one_of("validation", "training"),
                   "plateau schedule: the accuracy it watches", ""),
    "TRAIN_TAU": P(False, checks.boolean, "learn the hidden neurons' τ_m and τ_s", ""),
    "MIN_TAU_M": P(3.0, checks.positive,
                   "lower bound of heterogeneous and learned membrane time constants", "ms"),
    "MIN_TAU_SYN": P(1.0, checks.positive,
                     "lower bound of heterogeneous and learned synaptic time constants", "ms"),
    "TRAIN_TAU_OUTPUT": P(False, checks.boolean, "learn the output neurons' τ_m and τ_s", ""),
    # --- projections: delays and sparse connectivity (eventprop.projections) -----------------
    "DELAYS": P({}, checks.delays,
                "projections with a delay per synapse, initially uniform in [low, high], e.g. "
                "{'input_hidden': (0, 150), 'hidden_hidden': (0, 0)}", "ms"),
    "MAX_DELAY_MS": P(150.0, checks.non_negative,
                      "upper bound of every delay; the ring buffers hold MAX_DELAY_MS / DT_MS + 1 "
                      "steps", "ms"),
    "TRAIN_DELAYS": P(False, checks.boolean, "learn the delays of the projections in DELAYS",
                      ""),
    "ETA_DELAY": P(0.1, checks.non_negative,
                   "learning rate (Adam) of the delays: fixed, the schedule of ETA does not "
                   "change it", "ms"),
    "CONNECTIVITY": P({}, checks.connectivity,
                      "sparse projections, e.g. {'hidden_hidden': {'probability': 0.1, "
                      "'self_connections': False}} or {'input_hidden': {'inputs_per_neuron': "
                      "50}}; drawn from MODEL_SEED; others dense", ""),
    "TRAIN_W": P(True, checks.boolean,
                 "learn the input→hidden, hidden→hidden and recurrent weights", ""),
    "TRAIN_W_OUTPUT": P(True, checks.boolean, "learn the hidden→output weights", ""),
    "LOSS_TYPE": P("sum_weigh_exp", checks.one_of(*losses.LOSS_TYPES), "output loss", ""),
    "TAU_ACCUMULATOR": P(20.0, checks.positive,
                         "sum_weigh_input: time constant of the input accumulator", "ms"),
    "TAU_0": P(1.0, checks.positive, "first-spike losses: softmax temperature", "ms"),
    "TAU_1": P(100.0, checks.positive, "first_spike_exp: time scale of the penalty", "ms"),
    "ALPHA": P(5e-5, checks.non_negative, "first-spike losses: penalty strength", ""),
    # --- data --------------------------------------------------------------------------------
    "DATA_DIR": P("data", checks.string, "folder that holds the data set's folder", ""),
    "CACHE_DIR": P(None, checks.optional_string,
                   "folder of the binned-data cache (None: DATA_DIR/<data set>/cache, or "
                   "$XDG_CACHE_HOME/eventprop/<data set> (~/.cache/eventprop/<data set>) when "
                   "that folder cannot be written)", ""),
    "DOWNLOAD": P(False, checks.boolean, "fetch missing data files (needs internet)", ""),
    "REDUCED_CLASSES": P(None, checks.optional_class_list,
                         "classes to keep, relabelled 0 … k−1 in the list's order (k outputs)",
                         ""),
    "BALANCE_TRAIN_CLASSES": P(False, checks.boolean,
                               "every epoch, cut every class of the training part down to the "
                               "smallest class's size", ""),
    "BALANCE_EVAL_CLASSES": P(False, checks.boolean, "the same for the evaluation part", ""),
    # --- recordings and checkpoints ----------------------------------------------------------
    "REC_SPIKES": P([], checks.list_of(str),
                    "populations whose spikes are recorded: input, hidden (hidden0, hidden1, … "
                    "with layers), output", ""),
    "REC_NEURONS": P([], checks.list_of(list, tuple),
                     "(population, \"V\" or \"I\") pairs to record", ""),
    "REC_SYNAPSES": P([], checks.list_of(list, tuple), "(projection, \"w\") pairs to record", ""),
    "REC_SPIKES_EPOCH_TRIAL": P([], checks.list_of_pairs,
                                "[epoch, trial] pairs at which spikes are recorded (empty: none)",
                                ""),
    "REC_NEURONS_EPOCH_TRIAL": P([], checks.list_of_pairs,
                                 "[epoch, trial] pairs at which neuron variables are recorded "
                                 "(empty: none)", ""),
    "REC_SYNAPSES_EPOCH_TRIAL": P([], checks.list_of_pairs,
                                  "[epoch, trial] pairs at which weights are recorded (empty: "
                                  "none)", ""),
    "W_OUTPUT_EPOCH_TRIAL": P([], checks.list_of_pairs, "[epoch, trial] pairs of weight snapshots",
                              ""),
    "TAU_OUTPUT_EPOCH_TRIAL": P([], checks.list_of_pairs,
                                "[epoch, trial] pairs of time-constant snapshots", ""),
    "WRITE_TO_DISK": P(True, checks.boolean, "save recordings", ""),
    "COLLECT_CONFUSION": P(False, checks.boolean,
                           "write the confusion matrices of every epoch", ""),
    "REC_PREDICTIONS": P(False, checks.boolean,
                         "write the predictions and labels of every epoch", ""),
    "LOAD_LAST": P(False, checks.boolean,
                   "train / train_test: resume from checkpoint \"last\"; test: use its weights",
                   ""),
    "LOAD_BEST": P(False, checks.boolean,
                   "the same with checkpoint \"best\" (LOAD_LAST wins when both are set)", ""),
    "CHECKPOINT_NAME": P(None, checks.optional_string,
                         "prefix in OUT_DIR of the checkpoint to load (None: NAME)", ""),
    "CHECKPOINT": P(True, checks.boolean,
                    "write checkpoint \"last\" after every training epoch", ""),
    "CHECKPOINT_BEST": P("neither", checks.one_of("neither", "validation", "training"),
                         "write checkpoint \"best\" and {NAME}_best.txt when the validation or "
                         "training accuracy improves (neither: never)", ""),
}
