"""Make the tiny upscale model the example workflow ships:
``nodes/data/models/upscale_models/latentgraph-tiny-compact-x2.safetensors`` (~45 KB).

A Real-ESRGAN "Compact" network (SRVGGNetCompact, as spandrel knows it: 16 features, 4 convs, ×2),
trained here for a few seconds on the CPU to reproduce a bicubic ×2 of small random blocky
pictures (the kind the demo model draws). Not a good upscaler — a real, loadable one of a known
architecture, small enough to ship. Deterministic seed; run from the repository root:

    python tests/make_tiny_upscale_model.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from latentgraph.nodes.image.upscale_model import import_spandrel

OUT = Path(__file__).parent.parent / "nodes" / "data" / "models" / "upscale_models" / "latentgraph-tiny-compact-x2.safetensors"


def blocky_batch(g: torch.Generator, n: int = 16, size: int = 32) -> torch.Tensor:
    """Random pictures of flat-coloured rectangles on a flat background, [n, 3, size, size]."""
    x = torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, size, size).clone()
    for _ in range(3):
        for i in range(n):
            y0, x0 = torch.randint(0, size - 4, (2,), generator=g).tolist()
            h, w = torch.randint(4, size // 2, (2,), generator=g).tolist()
            x[i, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
    return x


def train(steps: int = 400) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(steps):
        x = blocky_batch(g)
        target = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
        loss = F.l1_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: L1 {loss.item():.4f}")
    return model.eval()


def main() -> None:
    torch.set_num_threads(1)
    model = train()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    meta = {"description": "latentgraph tiny Real-ESRGAN Compact x2 (trained toward bicubic; example only)",
            "made_by": "tests/make_tiny_upscale_model.py", "architecture": json.dumps("Compact")}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(OUT), metadata=meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
