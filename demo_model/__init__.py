"""The embedded demo model's tools: its procedural data, training, read-back and README pictures.

A development tool in the checkout, not part of the installed package: the trained model ships in
``latentgraph/nodes/data/models`` and runs without any of this. Run from the repository root, e.g.
``python -m demo_model.train --out DIR`` (see docs/models.md).
"""
