"""End to end over the server: txt2img on the tiny checkpoint, previews, the image via ``/view``."""

from __future__ import annotations

import io

from PIL import Image
from server_kit import run, serving

from latentgraph.server.previews import decode_frame
from latentgraph.testing import txt2img


def test_txt2img_over_the_server(lg_settings, tiny_checkpoint):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("painter")
            wf = txt2img(tiny_checkpoint.name, steps=3, seed=1, filename_prefix="srv/cat")
            ids = {title: wf.node(title).id for title in ("checkpoint", "positive", "negative", "latent", "sampler", "decode", "save")}
            editor = {"nodes": [], "links": [], "extra": {"note": "from the editor"}}
            reply = await client.submit(
                wf.to_api(), "painter", extra_data={"extra_pnginfo": {"workflow": editor}, "preview_method": "auto"}
            )
            msgs = await ws.until_done(reply["prompt_id"], timeout=120)
            kinds = [k for k, _ in msgs]
            assert kinds[:2] == ["execution_start", "execution_cached"] and kinds[-2:] == ["execution_success", "executing"]
            executing = [d["node"] for k, d in msgs if k == "executing"]
            assert set(executing[:-1]) == set(ids.values()) and executing[-1] is None
            assert executing.index(ids["sampler"]) < executing.index(ids["decode"]) < executing.index(ids["save"])
            progress = [(d["node"], d["value"], d["max"]) for k, d in msgs if k == "progress"]
            assert [p for p in progress if p[0] == ids["sampler"]][-1] == (ids["sampler"], 3, 3)
            assert ws.frames, "no preview frames during sampling"
            event, fmt, jpeg = decode_frame(ws.frames[0])
            assert (event, fmt) == (1, 1)
            assert Image.open(io.BytesIO(jpeg)).format == "JPEG"

            images = next(d for k, d in msgs if k == "executed" and d["node"] == ids["save"])["output"]["images"]
            assert images == [{"filename": "cat_00001_.png", "subfolder": "srv", "type": "output"}]  # ComfyUI's naming
            query = "&".join(f"{k}={images[0][k]}" for k in ("filename", "subfolder", "type"))
            async with client.session.get(client.url(f"/view?{query}")) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
                png = Image.open(io.BytesIO(await resp.read()))
            assert png.size == (64, 64)
            assert '"from the editor"' in png.info["workflow"] and ids["sampler"] in png.info["prompt"]

            # A new seed re-runs only the sampler and what follows it; no preview asked, none sent.
            wf.set(wf.node("sampler"), seed=2)
            again = await client.submit(wf.to_api(), "painter")
            ws.frames.clear()
            msgs = await ws.until_done(again["prompt_id"], timeout=120)
            assert ws.frames == []
            saved = next(d for k, d in msgs if k == "executed")["output"]["images"]
            assert saved[0]["filename"] == "cat_00002_.png"
            assert sorted(p.name for p in (lg_settings.output_dir / "srv").iterdir()) == ["cat_00001_.png", "cat_00002_.png"]
            cached = next(d for k, d in msgs if k == "execution_cached")["nodes"]
            assert sorted(cached) == sorted(ids[t] for t in ("checkpoint", "positive", "negative", "latent"))
            assert [d["node"] for k, d in msgs if k == "executing"] == [ids["sampler"], ids["decode"], ids["save"], None]

    run(go())
