"""Seeing diffusion (issue 19): nodes that draw a noise schedule, the forward process, a sampling
run step by step, latents and their statistics, and labelled XY grids of pictures."""

from latentgraph.nodes.inspect import forward_strip, latent_view, schedule_plot, trace, xy_grid

NODES: list = [*schedule_plot.NODES, *forward_strip.NODES, *trace.NODES, *latent_view.NODES, *xy_grid.NODES]
