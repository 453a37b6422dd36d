"""A sampler and a schedule written as plain functions (no latentgraph internals beyond the kit).

A sampler is ``function(model, x, sigmas, *, seed, callback, noise_sampler, **options) → x``:
``x`` is the noisy latent at ``sigmas[0]`` in σ form (``x0 + σ·ε``), ``model(x, σ_batch)`` is the
guided denoiser D(x, σ) returning an x0 estimate, and the result is the latent at ``sigmas[-1]``.
A schedule is ``function(model_sampling, steps) → sigmas``: ``steps + 1`` descending values
ending in 0.
"""

from __future__ import annotations

import torch

from latentgraph.nodes.sampling.kit import batch_sigma, report, to_d


def euler_midpoint(model, x, sigmas, *, seed=None, callback=None, noise_sampler=None):
    """The explicit midpoint method on the probability-flow ODE dx/dσ = (x − D(x, σ)) / σ.

    Each step takes a half step (to the geometric mean of σ and σ_next, the middle in log σ),
    re-evaluates the slope there and takes the whole step with it. The last step, to σ = 0,
    is a plain Euler step (the slope at σ = 0 is undefined). Deterministic: ``seed`` is unused.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma))
        report(callback, i, x, sigma, denoised)
        d = to_d(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
            continue
        sigma_mid = (sigma * sigma_next).sqrt()
        x_mid = x + d * (sigma_mid - sigma)
        d_mid = to_d(x_mid, sigma_mid, model(x_mid, batch_sigma(x, sigma_mid)))
        x = x + d_mid * (sigma_next - sigma)
    return x


def linspace(model_sampling, steps):
    """Timesteps evenly spaced from the model's top (T − 1) to 0, each rounded to a trained step,
    then σ = 0: only noise levels the model was trained at (ComfyUI's ``normal`` interpolates)."""
    top = model_sampling.num_timesteps - 1
    timesteps = torch.linspace(top, 0, steps).round().long()
    return torch.cat([model_sampling.sigmas[timesteps].float().cpu(), torch.zeros(1)])
