"""Adam and the learning-rate schedules."""
import numpy as np


class Adam:
    """Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    theta <- theta - eta m_hat / (sqrt(v_hat) + eps), bias-corrected with the step count t >= 1."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m, self.v = {}, {}
        self.t = 0

    def step(self, params, grads, eta, names):
        """One update of params[name] for every name in ``names`` (in place)."""
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for name in names:
            g = grads[name]
            if name not in self.m:
                self.m[name] = np.zeros_like(g)
                self.v[name] = np.zeros_like(g)
            m, v = self.m[name], self.v[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            params[name] -= (eta * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(
                params[name].dtype)

    def state(self):
        """Arrays and step count, for checkpoints."""
        state = {"adam_t": np.array(self.t)}
        state.update({f"adam_m/{k}": v for k, v in self.m.items()})
        state.update({f"adam_v/{k}": v for k, v in self.v.items()})
        return state

    def load_state(self, state):
        self.t = int(state["adam_t"])
        self.m = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_m/")}
        self.v = {k[7:]: np.array(v) for k, v in state.items() if k.startswith("adam_v/")}


class ExponentialDecay:
    """Yin-Yang learning rate: rate x ``decay`` at the start of every epoch (also the
    first, so epoch e uses eta * decay^(e+1))."""

    def __init__(self, eta, decay):
        self.rate = eta
        self.decay = decay

    def start_epoch(self):
        self.rate *= self.decay

    def after_trial(self):
        pass

    def end_of_epoch(self, epoch, accuracy):
        return False

    def state(self):
        return {"lr_rate": np.array(self.rate)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])


class LearningRateSchedule:
    """SHD/SSC learning rate.

    Ease-in: the effective rate starts at target / 1000 when a run starts and is multiplied by
    ``ease_in_factor`` after every trial, training or evaluation, until it reaches the target.
    Plateau: at the end of every epoch, with accuracy a (validation, or training, as chosen by the
    caller), E1 <- alpha1 E1 + (1 - alpha1) a and E2 <- alpha2 E2 + (1 - alpha2) a (both from 0);
    when more than ``min_epochs_fixed`` epochs have passed since the last reduction and E1 <= E2,
    the target is multiplied by ``factor`` and the effective rate jumps to it.

    A resumed run continues with the saved effective rate (the original restarts the ease-in)."""

    def __init__(self, eta, ease_in_factor=1.05, alpha1=0.8, alpha2=0.95, factor=0.5,
                 min_epochs_fixed=300):
        self.target = eta
        self.rate = eta / 1000.0
        self.ease_in_factor = ease_in_factor
        self.alpha1, self.alpha2 = alpha1, alpha2
        self.factor = factor
        self.min_epochs_fixed = min_epochs_fixed
        self.ema1 = self.ema2 = 0.0
        self.last_reduction = 0

    def start_epoch(self):
        pass

    def after_trial(self):
        """Ease-in step; returns the rate for the next trial."""
        self.rate = min(self.rate * self.ease_in_factor, self.target)
        return self.rate

    def end_of_epoch(self, epoch, accuracy):
        """EMA plateau test; returns True when the target was reduced."""
        self.ema1 = self.alpha1 * self.ema1 + (1.0 - self.alpha1) * accuracy
        self.ema2 = self.alpha2 * self.ema2 + (1.0 - self.alpha2) * accuracy
        if epoch - self.last_reduction > self.min_epochs_fixed and self.ema1 <= self.ema2:
            self.target *= self.factor
            self.rate = self.target
            self.last_reduction = epoch
            return True
        return False

    def state(self):
        """Everything a checkpoint needs to continue exactly."""
        return {"lr_rate": np.array(self.rate), "lr_target": np.array(self.target),
                "lr_ema1": np.array(self.ema1), "lr_ema2": np.array(self.ema2),
                "lr_last_reduction": np.array(self.last_reduction)}

    def load_state(self, state):
        self.rate = float(state["lr_rate"])
        self.target = float(state["lr_target"])
        self.ema1 = float(state["lr_ema1"])
        self.ema2 = float(state["lr_ema2"])
        self.last_reduction = int(state["lr_last_reduction"])
