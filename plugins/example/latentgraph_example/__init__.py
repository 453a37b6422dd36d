"""Example latentgraph plugin: image invert/blend, latent blend, a DEIS sampler, a linspace schedule."""

__version__ = "0.1.0"
