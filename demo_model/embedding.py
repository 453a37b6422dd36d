"""The shipped example embedding ``redcircle`` for the demo model (``embedding:redcircle``).

It is the demo text encoder's own token embeddings of the two words "red circle" (two vectors,
``emb_params`` [2, D], as SD2-style embeddings store them), so ``a embedding:redcircle on a blue
background`` encodes exactly as ``a red circle on a blue background`` and the demo model draws a
red circle. Rebuild it with ``python -m demo_model.embedding`` from the checkout; tests check the
shipped file equals what this makes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentgraph.nodes.builtin import DATA_DIR as NODES_DATA

DEMO_CHECKPOINT = "latentgraph-demo-shapes.safetensors"
NAME = "redcircle"
WORDS = "red circle"
DATA_DIR = NODES_DATA / "models"
SHIPPED = DATA_DIR / "embeddings" / f"{NAME}.safetensors"


def make_demo_embedding(checkpoint: Path = DATA_DIR / "checkpoints" / DEMO_CHECKPOINT) -> dict[str, torch.Tensor]:
    from latentgraph.nodes.checkpoints import load_single_file
    from latentgraph.settings import Settings

    settings = Settings.from_env(checkpoint.parent, environ={}, device="cpu", dtype="fp32")
    clip = load_single_file(checkpoint, settings).clip
    tokenizer, encoder = clip.tokenizers[0], clip.encoders[0]
    ids = tokenizer(WORDS, add_special_tokens=False)["input_ids"]
    table = encoder.get_input_embeddings().weight.detach()
    return {"emb_params": table[ids].clone().contiguous()}


def main() -> None:
    from safetensors.torch import save_file

    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    save_file(make_demo_embedding(), str(SHIPPED), metadata={"words": WORDS, "model": DEMO_CHECKPOINT})
    print(SHIPPED)


if __name__ == "__main__":
    main()
