"""The demo model's trainer: a short run with a tiny latent bank trains, exports and loads.

Budget 0.45 min (VAE 9 s, bank of 250 pictures, the rest UNet steps, no export reserve). Bars,
fixed before the first run: both losses fall — the VAE's last logged step below its first (a VAE
step takes seconds on a loaded machine, so 9 s give only a few rows), the UNet's mean of the last
three logged steps below the first three's (every step is logged: at the default 10-step log a
loaded machine logged a single VAE row, so the first version of this test could not compare); the export is an
SD1 single file that describes itself (architecture, scaling factor, UNet steps taken) and a
resumable state is written; the checkpoint runs the default workflow through the engine to a
64×64 picture. A one-minute model draws nothing recognisable, so the picture's content is not
judged — tests/test_demo_model.py judges the shipped model.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from latentgraph import Settings
from latentgraph.engine import Engine
from demo_model import train as demo_train
from latentgraph.nodes.model_configs import METADATA_KEY

from test_demo_model import WORKFLOW


def test_short_run_trains_exports_and_loads(tmp_path):
    threads = torch.get_num_threads()
    try:
        code = demo_train.main(["--out", str(tmp_path / "run"), "--minutes", "0.45", "--vae-minutes", "0.15",
                                "--bank-size", "250", "--export-reserve", "0", "--log-every", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
    assert code == 0
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "loss.jsonl").read_text().splitlines()]
    vae = [r["mse"] for r in rows if r["phase"] == "vae"]
    unet = [r["loss"] for r in rows if r["phase"] == "unet"]
    print(f"vae mse {vae[0]:.4f} → {vae[-1]:.4f} ({len(vae)} rows); unet loss {unet[0]:.3f} → {unet[-1]:.3f} ({len(unet)} rows)")
    assert len(vae) >= 2 and vae[-1] < vae[0]
    assert len(unet) >= 6 and np.mean(unet[-3:]) < np.mean(unet[:3])
    assert any(r["phase"] == "vae-check" for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["unet_steps"] > 10 and summary["scaling_factor"] > 0
    assert (run / "train_state.pt").is_file()

    ckpt = run / demo_train.SHIPPED_NAME
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
    assert meta["vae"]["scaling_factor"] == summary["scaling_factor"]
    assert meta["extra"]["unet_steps"] == summary["unet_steps"]

    data = tmp_path / "data"
    (data / "models" / "checkpoints").mkdir(parents=True)
    (data / "models" / "checkpoints" / "trained.safetensors").write_bytes(ckpt.read_bytes())
    engine = Engine.create(Settings.from_env(data, environ={}, device="cpu"), entry_points=False)
    wf = json.loads(json.dumps(WORKFLOW))
    wf["4"]["inputs"]["ckpt_name"] = "trained.safetensors"
    result = engine.run(wf)
    assert result.ok, result.failure and result.failure.message
    (image,) = result.outputs["9"]["images"]
    picture = np.asarray(Image.open(engine.settings.output_dir / image["subfolder"] / image["filename"]).convert("RGB"))
    assert picture.shape == (64, 64, 3) and np.isfinite(picture).all()
