"""Single-neuron equations of models.py against closed-form solutions."""
import math

import numpy as np
import pytest

from eventprop import models


def analytic_V(t, I0, tau_m, tau_s):
    """V(t) of tau_m dV/dt = -V + I, I(t) = I0 exp(-t/tau_s), V(0) = 0."""
    if tau_m == tau_s:
        return I0 * t / tau_m * math.exp(-t / tau_m)
    return I0 * tau_s / (tau_m - tau_s) * (math.exp(-t / tau_m) - math.exp(-t / tau_s))


@pytest.mark.parametrize("tau_m,tau_s", [(20.0, 5.0), (10.0, 10.0), (5.0, 8.0)])
@pytest.mark.parametrize("dt", [1.0, 0.1])
def test_lif_step_is_exact(tau_m, tau_s, dt):
    alpha, beta, c, d = models.lif_coefficients(tau_m, tau_s, dt)
    V, I = 0.0, 1.3
    for n in range(1, 200):
        V = models.lif_membrane_update(V, I, alpha, c)
        I = models.synapse_decay(I, beta)
        assert V == pytest.approx(analytic_V(n * dt, 1.3, tau_m, tau_s), rel=1e-12, abs=1e-14)
        assert I == pytest.approx(1.3 * math.exp(-n * dt / tau_s), rel=1e-12)


def test_equal_tau_branch_is_the_limit():
    near = models.lif_coefficients(10.0, 10.0 + 1e-6, 0.5)
    equal = models.lif_coefficients(10.0, 10.0, 0.5)
    assert np.allclose(near, equal, rtol=1e-5)


@pytest.mark.parametrize("tau_m,tau_s", [(20.0, 5.0), (10.0, 10.0)])
def test_adjoint_free_dynamics_is_exact(tau_m, tau_s):
    """Reverse time s: lambda_V = l0 exp(-s/tau_m); tau_s dlambda_I/ds = -lambda_I + lambda_V."""
    dt = 0.5
    alpha, beta, c, d = models.lif_coefficients(tau_m, tau_s, dt)
    lV, lI = 0.7, 0.0
    for n in range(1, 100):
        lV, lI = models.lif_adjoint_update(lV, lI, 0.0, alpha, beta, d)
        s = n * dt
        assert lV == pytest.approx(0.7 * math.exp(-s / tau_m), rel=1e-12)
        # lambda_I obeys the same equations as I -> V with the roles of tau_m and tau_s swapped
        assert lI == pytest.approx(analytic_V(s, 0.7, tau_s, tau_m), rel=1e-10)


def test_adjoint_with_constant_forcing_converges_to_forcing():
    alpha, beta, c, d = models.lif_coefficients(20.0, 5.0, 1.0)
    lV, lI = 0.0, 0.0
    for _ in range(2000):
        lV, lI = models.lif_adjoint_update(lV, lI, 0.25, alpha, beta, d)
    assert lV == pytest.approx(0.25, rel=1e-9)
    assert lI == pytest.approx(0.25, rel=1e-9)


def test_adjoint_forcing_step_matches_fine_integration():
    """One exact step with forcing A equals a fine Euler integration of the reverse-time ODEs."""
    tau_m, tau_s, dt, A = 20.0, 5.0, 1.0, 0.3
    alpha, beta, c, d = models.lif_coefficients(tau_m, tau_s, dt)
    lV, lI = models.lif_adjoint_update(0.2, -0.1, A, alpha, beta, d)
    v, i, h = 0.2, -0.1, 1e-5
    for _ in range(int(dt / h)):
        v, i = v + h * (A - v) / tau_m, i + h * (v - i) / tau_s
    assert lV == pytest.approx(v, rel=1e-4)
    assert lI == pytest.approx(i, rel=1e-4)


def test_lif_jump():
    # lambda_V + (theta lambda_V + rev) / ImV
    assert models.lif_spike_jump(0.5, 0.2, 1.0, 0.25) == pytest.approx(0.5 + (0.5 + 0.2) / 0.25)


def test_alif_jump_reduces_to_lif_without_adaptation():
    lV, lb = models.alif_spike_jump(0.5, 0.0, 0.2, 1.0, 0.0, 0.25, 0.0, 20.0, 100.0)
    assert lV == pytest.approx(models.lif_spike_jump(0.5, 0.2, 1.0, 0.25))
    assert lb == pytest.approx(-lV)


def test_alif_imv_is_slope_of_threshold_function():
    """tau_m d/dt (V - theta - b) at the crossing, with b decaying at rate b/tau_b."""
    I, V, b, tau_m, tau_b = 1.6, 1.2, 0.2, 20.0, 100.0
    assert models.alif_imv(I, V, b, tau_m, tau_b) == pytest.approx(
        tau_m * ((I - V) / tau_m + b / tau_b))


def test_hash_random_numbers():
    u = np.array([models.uniform_hash(3, i, 7, 11) for i in range(20000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    assert models.uniform_hash(3, 1, 7, 11) == models.uniform_hash(3, 1, 7, 11)
    assert models.uniform_hash(3, 1, 7, 11) != models.uniform_hash(4, 1, 7, 11)
    z = np.array([models.normal_hash(5, 0, i, 2) for i in range(20000)])
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03
