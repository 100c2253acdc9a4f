"""The pure scoring / compensation cores against their defining equations, in float64."""

from __future__ import annotations

import numpy as np
import torch

from edgecomp.prune import scoring


def _problem(D=24, out=10, N=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64) @ torch.randn(D, D, generator=g, dtype=torch.float64)
    W = torch.randn(out, D, generator=g, dtype=torch.float64)
    return X, W, X.T @ X


def test_newton_mask_is_the_stationary_point_of_the_relaxed_objective():
    X, W, G = _problem()
    rho, lam = 0.25, 0.3
    z = scoring.newton_mask(W, G, rho, lam=lam, damp=0.0)
    Xn = X / torch.linalg.norm(X)  # the normalisation newton_mask applies
    D = G.shape[0]
    r = (1 - rho) * D

    def objective(z):
        E = Xn @ (W.T * (1 - z)[:, None])  # X W_{*,i} − X(z∘W_{*,i}) for every output i
        return 0.5 * (E**2).sum() + 0.5 * lam * (z.sum() - r) ** 2

    zz = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(zz), zz)
    assert grad.abs().max() < 1e-9 * max(1.0, float(objective(z)))
    # and a few plain Newton iterations from z = 1 land on the same point (the objective is quadratic)
    A = (W.T @ W) * (Xn.T @ Xn)
    H = A + lam * torch.ones(D, D, dtype=torch.float64)
    zi = torch.ones(D, dtype=torch.float64)
    for _ in range(3):
        g = A @ (zi - 1) + lam * (zi.sum() - r)
        zi = zi - torch.linalg.solve(H, g)
    torch.testing.assert_close(z, zi, rtol=1e-8, atol=1e-8)


def test_compensation_equals_the_papers_closed_form_and_beats_dropping():
    X, W, G = _problem()
    keep = torch.tensor([i for i in range(24) if i % 3])
    pruned = torch.tensor([i for i in range(24) if i % 3 == 0])
    Wc = scoring.compensate(W, G, keep, damp=0.0)
    # paper orientation: W_p = W.T [D, out]; δW* = −G⁻¹M_p(M_pᵀG⁻¹M_p)⁻¹M_pᵀW
    M = torch.zeros(24, len(pruned), dtype=torch.float64)
    M[pruned, torch.arange(len(pruned))] = 1
    Gi = torch.linalg.inv(2 * G)
    dW = -Gi @ M @ torch.linalg.inv(M.T @ Gi @ M) @ M.T @ W.T
    torch.testing.assert_close(Wc.T, W.T + dW, rtol=1e-7, atol=1e-9)
    assert Wc[:, pruned].abs().max() == 0
    dropped = W.clone()
    dropped[:, pruned] = 0
    err = lambda V: float(((X @ (W - V).T) ** 2).sum())  # noqa: E731
    assert err(Wc) < 0.5 * err(dropped)


def test_compensation_to_the_original_output_is_the_least_squares_fit_through_drifted_inputs():
    X_ref, W, _ = _problem()
    g = torch.Generator().manual_seed(1)
    X = X_ref + 0.3 * torch.randn(X_ref.shape, generator=g, dtype=torch.float64)  # earlier cuts' drift
    G, C = X.T @ X, X.T @ X_ref
    keep = torch.tensor([i for i in range(24) if i % 3])
    Wc = scoring.compensate(W, G, keep, damp=0.0, C=C)
    # the normal equations' solution of min ‖X_ref Wᵀ − X_k W'_kᵀ‖², pruned columns zero
    expected = torch.linalg.lstsq(X[:, keep], X_ref @ W.T).solution.T
    torch.testing.assert_close(Wc[:, keep], expected, rtol=1e-7, atol=1e-9)
    assert Wc[:, [i for i in range(24) if i % 3 == 0]].abs().max() == 0
    # C = XᵀX (no drift) is the paper's compensation; keeping every column still undoes the drift
    torch.testing.assert_close(scoring.compensate(W, G, keep, damp=0.0, C=G), scoring.compensate(W, G, keep, damp=0.0))
    full = scoring.compensate(W, G, torch.arange(24), damp=0.0, C=C)
    err = lambda V: float(((X_ref @ W.T - X @ V.T) ** 2).sum())  # noqa: E731
    assert err(full) < 0.9 * err(W)
    # damping pulls the fit towards the original weights, not towards zero
    heavy = scoring.compensate(W, G, torch.arange(24), damp=1e6, C=C)
    torch.testing.assert_close(heavy, W, rtol=0, atol=1e-3 * float(W.abs().max()))


def test_optimal_loss_is_the_output_energy_left_after_compensation():
    X, W, G = _problem()
    groups = [torch.tensor([3]), torch.tensor([5, 6, 7])]
    L = scoring.optimal_losses(W, G, groups, damp=0.0)
    for g, loss in zip(groups, L, strict=True):
        keep = torch.tensor([i for i in range(24) if i not in set(g.tolist())])
        left = ((X @ (W - scoring.compensate(W, G, keep, damp=0.0)).T) ** 2).sum()
        assert np.isclose(float(loss), float(left), rtol=1e-6)


def test_singular_gram_still_solves():
    X, W, _ = _problem(N=5)  # rank 5 < D = 24
    G = X.T @ X
    z = scoring.newton_mask(W, G, 0.5)
    Wc = scoring.compensate(W, G, torch.arange(12))
    assert torch.isfinite(z).all() and torch.isfinite(Wc).all()


def test_flap_bias_keeps_the_mean_output():
    X, W, _ = _problem()
    mean = X.mean(0)
    pruned = torch.tensor([0, 4, 9])
    Wd = W.clone()
    Wd[:, pruned] = 0
    b = scoring.flap_bias(W, mean, pruned)
    torch.testing.assert_close((X @ Wd.T + b).mean(0), (X @ W.T).mean(0))


def test_magnitude_is_rms_of_the_removed_weights():
    W_out = torch.tensor([[3.0, 0.0], [4.0, 0.0]])
    W_in = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(scoring.magnitude(W_out, [W_in]), torch.tensor([5 / 5**0.5, (3 / 5) ** 0.5],
                                                                                dtype=torch.float64))
