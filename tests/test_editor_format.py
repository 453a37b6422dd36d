"""Editor format: ComfyUI's default workflow, API ⇄ editor round trips (hypothesis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentgraph.editor_format import api_to_editor
from editor_kit import Editor, convert, registry  # noqa: F401 - registry is a fixture


COMFY_DEFAULT = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {"id": 7, "type": "CLIPTextEncode", "pos": [413, 389], "size": [425, 180], "flags": {}, "order": 3, "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["text, watermark"]},
        {"id": 6, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422, 164], "flags": {}, "order": 2, "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["a bottle with a galaxy inside"]},
        {"id": 5, "type": "EmptyLatentImage", "pos": [473, 609], "size": [315, 106], "flags": {}, "order": 0, "mode": 0,
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
         "properties": {"Node name for S&R": "EmptyLatentImage"}, "widgets_values": [512, 512, 1]},
        {"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6}, {"name": "latent_image", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
         "properties": {"Node name for S&R": "KSampler"}, "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
        {"id": 8, "type": "VAEDecode", "pos": [1209, 188], "size": [210, 46], "flags": {}, "order": 5, "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}], "properties": {"Node name for S&R": "VAEDecode"}},
        {"id": 9, "type": "SaveImage", "pos": [1451, 189], "size": [210, 58], "flags": {}, "order": 6, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 9}], "properties": {}, "widgets_values": ["ComfyUI"]},
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "flags": {}, "order": 1, "mode": 0,
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}, {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                     {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2}],
         "properties": {"Node name for S&R": "CheckpointLoaderSimple"}, "widgets_values": ["v1-5-pruned-emaonly.safetensors"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
              [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}


def test_comfyui_default_workflow(registry):
    if registry.get("KSampler") is None:
        pytest.skip("SD nodes not registered")
    result = convert(registry, COMFY_DEFAULT)
    assert result.ok, result.report.format()
    strip = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in result.prompt.items()}
    assert strip == {
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bottle with a galaxy inside", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                                                   "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    }


# -- property: random editor twins of random API graphs convert back to them ------------------------


@st.composite
def api_graph_and_editor_twin(draw):
    """An API graph of test nodes, and an editor file for it with reroutes, primitives, bypassed
    pass-throughs, notes, a muted dead end, and links written in a random form."""
    form = draw(st.sampled_from(["array", "object", "keyed"]))
    ed = Editor(form)
    api: dict[str, Any] = {}
    ints: list[str] = []  # nodes with an INT output 0
    latents: list[str] = []
    extra_id = iter(range(1000, 2000))
    small = st.integers(-50, 50)

    def feed(src: str, dst: int, name: str, link_type: str) -> None:
        """Link src→dst, maybe through reroutes or a bypassed pass-through node."""
        how = draw(st.sampled_from(["direct", "reroute", "bypass"]))
        current = int(src)
        if how == "reroute":
            for _ in range(draw(st.integers(1, 2))):
                rid = next(extra_id)
                ed.node(rid, "Reroute", inputs=[("", "*")], outputs=[link_type])
                ed.link(current, 0, rid, "", link_type)
                current = rid
        elif how == "bypass":
            bid = next(extra_id)
            if link_type == "INT":
                ed.node(bid, "Add", widgets=[0, 0, 1.0], inputs=[("a", "INT", True)], outputs=["INT"], mode=4)
                ed.link(current, 0, bid, "a", link_type)
            else:
                ed.node(bid, "Mix", widgets=[0.5], inputs=[("a", "LATENT"), ("b", "LATENT")], outputs=["LATENT"], mode=4)
                ed.link(current, 0, bid, "a", link_type)
            current = bid
        ed.link(current, 0, dst, name, link_type)

    count = draw(st.integers(1, 6))
    for i in range(1, count + 1):
        choices = ["Const", "Blob", "Seeded", "Text"] + (["Add"] if ints else []) + (["Size", "Mix"] if latents else [])
        kind = draw(st.sampled_from(choices))
        title = f"n{i}"
        if kind == "Const":
            v = draw(small)
            prim = draw(st.booleans())
            node = ed.node(i, "Const", widgets=[0 if prim else v], inputs=[("value", "INT", True)] if prim else [], outputs=["INT"], title=title)
            if prim:
                pid = next(extra_id)
                ed.node(pid, "PrimitiveNode", widgets=[v, "fixed"], outputs=["INT"])
                ed.link(pid, 0, i, "value", "INT")
            api[str(i)] = {"value": v}
            ints.append(str(i))
        elif kind == "Seeded":
            seed, offset = draw(st.integers(0, 1000)), draw(small)
            control = draw(st.sampled_from([[], ["fixed"], ["randomize"]]))
            ed.node(i, "Seeded", widgets=[seed, *control, offset], outputs=["INT"], title=title)
            api[str(i)] = {"seed": seed, "offset": offset}
            ints.append(str(i))
        elif kind == "Blob":
            kib, tag = draw(st.integers(1, 4)), draw(small)
            ed.node(i, "Blob", widgets=[kib, tag], outputs=["LATENT"], title=title)
            api[str(i)] = {"kib": kib, "tag": tag}
            latents.append(str(i))
        elif kind == "Text":
            text, mode, shout = draw(st.text(max_size=8)), draw(st.sampled_from(["plain", "upper"])), draw(st.booleans())
            ed.node(i, "Text", widgets=[text, mode, shout], outputs=["STRING"], title=title)
            api[str(i)] = {"text": text, "mode": mode, "shout": shout}
        elif kind == "Add":
            src = draw(st.sampled_from(ints))
            b = draw(small)
            with_scale = draw(st.booleans())
            ed.node(i, "Add", widgets=[0, b, 2.0] if with_scale else [0, b], inputs=[("a", "INT", True)], outputs=["INT"], title=title)
            feed(src, i, "a", "INT")
            api[str(i)] = {"a": [src, 0], "b": b, **({"scale": 2.0} if with_scale else {})}
            ints.append(str(i))
        elif kind == "Size":
            src = draw(st.sampled_from(latents))
            ed.node(i, "Size", inputs=[("latent", "LATENT")], outputs=["INT"], title=title)
            feed(src, i, "latent", "LATENT")
            api[str(i)] = {"latent": [src, 0]}
            ints.append(str(i))
        else:  # Mix
            a, b, w = draw(st.sampled_from(latents)), draw(st.sampled_from(latents)), draw(st.sampled_from([0.0, 0.25, 1.0]))
            ed.node(i, "Mix", widgets=[w], inputs=[("a", "LATENT"), ("b", "LATENT")], outputs=["LATENT"], title=title)
            feed(a, i, "a", "LATENT")
            feed(b, i, "b", "LATENT")
            api[str(i)] = {"a": [a, 0], "b": [b, 0], "weight": w}
            latents.append(str(i))
        api[str(i)] = {"class_type": kind, "inputs": api[str(i)], "_meta": {"title": title}}
    if draw(st.booleans()):
        ed.node(next(extra_id), "Note", widgets=["notes are not run"])
    if ints and draw(st.booleans()):  # a muted consumer: dropped without a trace
        mid = next(extra_id)
        ed.node(mid, "Show", inputs=[("value", "*")], mode=2)
        ed.link(int(ints[0]), 0, mid, "value", "INT")
    order = draw(st.permutations(range(len(ed.nodes))))
    ed.nodes = [ed.nodes[k] for k in order]  # node order in the file does not matter
    return api, ed.json()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(api_graph_and_editor_twin())
def test_random_editor_twins_convert_to_their_api_graph(registry, case):
    api, editor = case
    result = convert(registry, copy.deepcopy(editor))
    assert result.ok, result.report.format()
    assert result.prompt == api, json.dumps(editor)[:2000]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(api_graph_and_editor_twin())
def test_api_to_editor_and_back(registry, case):
    api, _editor = case
    editor, report = api_to_editor(api, registry)
    assert not report, report.format()
    assert convert(registry, editor).prompt == api


def test_api_to_editor_renumbers_and_reports(registry):
    api = {
        "a": {"class_type": "Blob", "inputs": {"kib": 1, "tag": 2}},
        "2": {"class_type": "Size", "inputs": {"latent": ["a", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    editor, report = api_to_editor(api, registry)
    assert not report
    back = convert(registry, editor).prompt
    (blob_id,) = [k for k, v in back.items() if v["class_type"] == "Blob"]
    assert blob_id not in ("a", "2", "3") and back["2"]["inputs"] == {"latent": [blob_id, 0]}
    _, report = api_to_editor({"1": {"class_type": "Nope", "inputs": {}}}, registry)
    assert report.node_errors["1"].errors[0].type == "missing_node_type"


def test_api_to_editor_reports_unreadable_links(registry):
    api = {"1": {"class_type": "Blob", "inputs": ["kib"]}, "2": {"class_type": "Size", "inputs": {"latent": ["1", "x"]}}}
    _, report = api_to_editor(api, registry)
    assert [e.type for e in report.node_errors["2"].errors] == ["invalid_input_type"]
