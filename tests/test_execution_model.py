"""ComfyUI's execution model (issue 16): lists, lazy inputs, node expansion, async nodes.

Small pure-Python nodes count their executions, so each test shows what ran and what did not.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time
from collections import Counter

import pytest
import torch

from latentgraph import In, Node, NodeResult, NodeSpec, Out, hookimpl
from latentgraph.context import InterruptFlag
from latentgraph.events import EventLog, ExecutionInterrupted, NodeFinished
from latentgraph.node import GraphBuilder
from latentgraph.nodes.latent.batch import RebatchLatents
from latentgraph.nodes.utility.primitives import ComfySwitchNode
from latentgraph.object_info import object_info
from latentgraph.testing import WorkflowBuilder, assert_success

CALLS: Counter = Counter()


class ListSource(Node):
    """"1,2,3" → a list of three INTs."""

    spec = NodeSpec(name="EmList", inputs=(In("values", "STRING"),), outputs=(Out("INT", is_list=True),))

    def execute(self, ctx, values):
        CALLS["EmList"] += 1
        return ([int(v) for v in values.split(",") if v.strip()],)


class Double(Node):
    spec = NodeSpec(name="EmDouble", inputs=(In("x", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, x):
        CALLS[f"EmDouble({x})"] += 1
        return (2 * x,)


class Add(Node):
    spec = NodeSpec(name="EmAdd", inputs=(In("a", "INT"), In("b", "INT")), outputs=(Out("INT"),))

    def execute(self, ctx, a, b):
        CALLS["EmAdd"] += 1
        return (a + b,)


class Collect(Node):
    """Takes whole lists (INPUT_IS_LIST): shows them, and their sum."""

    spec = NodeSpec(
        name="EmCollect",
        inputs=(In("x", "INT"), In("label", "STRING", default="", required=False)),
        outputs=(Out("INT", "sum"),),
        output_node=True,
        input_is_list=True,
    )

    def execute(self, ctx, x, label):
        CALLS["EmCollect"] += 1
        assert isinstance(x, list) and isinstance(label, list)
        return NodeResult((sum(x),), ui={"values": list(x), "label": label})


class Show(Node):
    spec = NodeSpec(name="EmShow", inputs=(In("value", "*"),), output_node=True)

    def execute(self, ctx, value):
        return NodeResult(ui={"value": [value]})


class Const(Node):
    spec = NodeSpec(name="EmConst", inputs=(In("value", "INT"), In("tag", "STRING", default="", required=False)), outputs=(Out("INT"),))

    def execute(self, ctx, value, tag):
        CALLS[f"EmConst:{tag}"] += 1
        return (value,)


class Inc(Node):
    spec = NodeSpec(name="EmInc", inputs=(In("x", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, x):
        CALLS[f"EmInc({x})"] += 1
        if x >= 100:
            raise ValueError(f"{x} is too big")
        return (x + 1,)


class Loop(Node):
    """Adds 1 to ``x`` ``times`` times by expanding into an EmInc and a smaller EmLoop."""

    spec = NodeSpec(name="EmLoop", inputs=(In("x", "INT"), In("times", "INT", min=0)), outputs=(Out("INT"),))

    def execute(self, ctx, x, times):
        CALLS["EmLoop"] += 1
        if times == 0:
            return (x,)
        g = GraphBuilder()
        step = g.node("EmInc", x=x)
        rest = g.node("EmLoop", x=step.out(0), times=times - 1)
        return NodeResult((rest.out(0),), expand=g)


class Sleep(Node):
    spec = NodeSpec(name="EmSleep", inputs=(In("x", "INT"), In("seconds", "FLOAT", default=0.3)), outputs=(Out("INT"),))

    async def execute(self, ctx, x, seconds):
        await asyncio.sleep(seconds)
        CALLS["EmSleep"] += 1
        return (x,)


class Busy(Node):
    """Synchronous work (blocks its thread, not the engine's loop)."""

    spec = NodeSpec(name="EmBusy", inputs=(In("x", "INT"), In("seconds", "FLOAT", default=0.3)), outputs=(Out("INT"),))

    def execute(self, ctx, x, seconds):
        time.sleep(seconds)
        return (x,)


EVENTS: dict[str, threading.Event] = {}


class Rendezvous(Node):
    """Async: announces ``me`` then awaits ``peer`` — finishes only if the peer runs meanwhile."""

    spec = NodeSpec(name="EmRendezvous", inputs=(In("me", "STRING"), In("peer", "STRING")), outputs=(Out("STRING"),),
                    deterministic=False)

    async def execute(self, ctx, me, peer):
        EVENTS.setdefault(me, threading.Event()).set()
        other = EVENTS.setdefault(peer, threading.Event())
        for _ in range(500):
            if other.is_set():
                return (f"{me} met {peer}",)
            await asyncio.sleep(0.01)
        raise TimeoutError(f"{peer} never came")


class Flaky(Node):
    """Deterministic, but its fingerprint cannot be computed."""

    spec = NodeSpec(name="EmFlaky", inputs=(In("x", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, x):
        CALLS["EmFlaky"] += 1
        return (x,)

    @classmethod
    def fingerprint(cls, settings, inputs):
        raise OSError("cannot stat")


class MakeLatent(Node):
    spec = NodeSpec(name="EmLatent", inputs=(In("batch", "INT"),), outputs=(Out("LATENT"),))

    def execute(self, ctx, batch):
        return ({"samples": torch.zeros(batch, 4, 2, 2)},)


class BatchSize(Node):
    spec = NodeSpec(name="EmBatchSize", inputs=(In("samples", "LATENT"),), outputs=(Out("INT"),))

    def execute(self, ctx, samples):
        return (int(samples["samples"].shape[0]),)


class Plugin:
    @hookimpl
    def register_nodes(self):
        return [ListSource, Double, Add, Collect, Show, Const, Inc, Loop, Sleep, Busy, Rendezvous, Flaky,
                MakeLatent, BatchSize, RebatchLatents, ComfySwitchNode]


@pytest.fixture
def engine(lg_engine):
    CALLS.clear()
    EVENTS.clear()
    engine = lg_engine(Plugin(), builtins=False)
    yield engine
    engine.close()


# -- lists ------------------------------------------------------------------------------------------
def test_a_node_maps_over_a_list_and_input_is_list_takes_it_whole(engine):
    wf = WorkflowBuilder()
    src = wf.add("EmList", values="1,2,3")
    dbl = wf.add("EmDouble", x=src[0])
    wf.add("EmCollect", x=dbl[0], label="doubled")
    result = assert_success(engine.run(wf.to_api()))
    assert result.outputs["3"] == {"values": [2, 4, 6], "label": ["doubled"]}
    assert CALLS["EmDouble(1)"] == CALLS["EmDouble(2)"] == CALLS["EmDouble(3)"] == 1
    assert CALLS["EmCollect"] == 1


def test_longest_list_wins_and_shorter_ones_repeat_their_last_item(engine):
    wf = WorkflowBuilder()
    a = wf.add("EmList", values="1,2,3")
    b = wf.add("EmList", values="10,20")
    c = wf.add("EmConst", value=100)
    s = wf.add("EmAdd", a=a[0], b=b[0])
    t = wf.add("EmAdd", a=s[0], b=c[0])  # a plain value repeats for every item
    wf.add("EmCollect", x=t[0])
    result = assert_success(engine.run(wf.to_api()))
    assert result.outputs["6"]["values"] == [111, 122, 123]
    assert CALLS["EmAdd"] == 6


def test_a_mapped_output_node_shows_every_item(engine):
    wf = WorkflowBuilder()
    wf.add("EmShow", value=wf.add("EmList", values="4,5")[0])
    assert assert_success(engine.run(wf.to_api())).outputs["2"] == {"value": [4, 5]}


def test_each_item_is_cached_on_its_own(engine):
    wf = WorkflowBuilder()
    src = wf.add("EmList", values="1,2,3")
    wf.add("EmCollect", x=wf.add("EmDouble", x=src[0])[0])
    engine.run(wf.to_api())
    wf.set(src, values="1,2,3,4")
    result = assert_success(engine.run(wf.to_api()))
    assert result.outputs["3"]["values"] == [2, 4, 6, 8]
    # the list changed, so EmDouble ran again — but only for the new item
    assert [CALLS[f"EmDouble({i})"] for i in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert engine.run(wf.to_api()).executed == []  # and an identical re-run runs nothing


def test_rebatch_is_a_real_list_node(engine):
    wf = WorkflowBuilder()
    lat = wf.add("EmLatent", batch=5)
    re = wf.add("RebatchLatents", latents=lat[0], batch_size=2)
    wf.add("EmCollect", x=wf.add("EmBatchSize", samples=re[0])[0])
    assert assert_success(engine.run(wf.to_api())).outputs["4"]["values"] == [2, 2, 1]
    info = object_info(engine.registry, engine.settings)
    assert info["RebatchLatents"]["output_is_list"] == [True]
    assert info["EmList"]["output_is_list"] == [True] and info["EmDouble"]["output_is_list"] == [False]
    assert info["ComfySwitchNode"]["input"]["required"]["on_true"][1]["lazy"] is True


# -- lazy inputs ------------------------------------------------------------------------------------
def switch_workflow(switch: bool) -> WorkflowBuilder:
    wf = WorkflowBuilder()
    yes = wf.add("EmConst", value=1, tag="true-branch")
    no = wf.add("EmConst", value=2, tag="false-branch")
    no2 = wf.add("EmDouble", x=no[0])
    sw = wf.add("ComfySwitchNode", switch=switch, on_true=yes[0], on_false=no2[0])
    wf.add("EmShow", value=sw[0])
    return wf


def test_lazy_switch_never_evaluates_the_branch_it_does_not_take(engine):
    result = assert_success(engine.run(switch_workflow(True).to_api()))
    assert result.outputs["5"] == {"value": [1]}
    assert CALLS["EmConst:true-branch"] == 1
    assert CALLS["EmConst:false-branch"] == 0 and CALLS["EmDouble(2)"] == 0
    assert sorted(result.executed) == ["1", "4", "5"] and result.cached == []
    # identical re-run: cached; the other way: only the other branch runs
    assert engine.run(switch_workflow(True).to_api()).executed == []
    result = assert_success(engine.run(switch_workflow(False).to_api()))
    assert result.outputs["5"] == {"value": [4]}
    assert sorted(result.executed) == ["2", "3", "4", "5"]
    assert CALLS["EmConst:true-branch"] == 1 and CALLS["EmConst:false-branch"] == 1


def test_a_lazy_branch_is_served_from_the_cache(engine):
    engine.run(switch_workflow(False).to_api())
    CALLS.clear()
    wf = switch_workflow(False)
    wf.set("5", value=wf.add("EmAdd", a=["4", 0], b=["3", 0])[0])  # a new consumer; the switch is cached
    assert_success(engine.run(wf.to_api()))
    assert CALLS["EmConst:false-branch"] == 0 and CALLS["EmDouble(2)"] == 0


# -- node expansion ---------------------------------------------------------------------------------
def test_expansion_into_a_loop_with_stable_ids_and_caching(engine):
    wf = WorkflowBuilder()
    loop = wf.add("EmLoop", id="7", x=wf.add("EmConst", value=10)[0], times=3)
    wf.add("EmShow", id="3", value=loop[0])
    result = assert_success(engine.run(wf.to_api()))
    assert result.outputs["3"] == {"value": [13]}
    assert [CALLS[f"EmInc({i})"] for i in (10, 11, 12)] == [1, 1, 1]
    assert "7.0.1" in result.executed and "7.0.2.0.1" in result.executed  # <node>.<call>.<local id>
    assert engine.run(wf.to_api()).executed == []
    wf.set(loop, times=4)  # one step more: the three earlier steps come from the cache
    result = assert_success(engine.run(wf.to_api()))
    assert result.outputs["3"] == {"value": [14]}
    assert [CALLS[f"EmInc({i})"] for i in (10, 11, 12, 13)] == [1, 1, 1, 1]


def test_an_error_inside_an_expansion_names_the_workflow_node(engine):
    wf = WorkflowBuilder()
    wf.add("EmShow", value=wf.add("EmLoop", id="9", x=99, times=3)[0])
    result = engine.run(wf.to_api())
    assert result.status == "error"
    assert result.failure.node_id == "9" and result.failure.class_type == "EmLoop"
    assert "100 is too big" in result.failure.message and "'9.0.2.0.1' (EmInc)" in result.failure.message


def test_expansion_over_a_list_expands_per_item(engine):
    wf = WorkflowBuilder()
    loop = wf.add("EmLoop", x=wf.add("EmList", values="0,5")[0], times=2)
    wf.add("EmCollect", x=loop[0])
    assert assert_success(engine.run(wf.to_api())).outputs["3"]["values"] == [2, 7]


# -- async nodes ------------------------------------------------------------------------------------
def test_async_nodes_overlap_each_other_and_sync_work(engine):
    wf = WorkflowBuilder()
    a = wf.add("EmSleep", x=1, seconds=0.4)
    b = wf.add("EmSleep", x=2, seconds=0.4)
    c = wf.add("EmBusy", x=3, seconds=0.4)
    wf.add("EmCollect", x=wf.add("EmAdd", a=wf.add("EmAdd", a=a[0], b=b[0])[0], b=c[0])[0])
    started = time.perf_counter()
    result = assert_success(engine.run(wf.to_api()))
    elapsed = time.perf_counter() - started
    assert result.outputs["6"]["values"] == [6]
    assert elapsed < 0.95, f"{elapsed:.2f}s: the three 0.4 s nodes did not overlap"
    assert engine.run(wf.to_api()).executed == []  # cached like any node


def test_an_async_node_overlaps_another_prompts_work(engine):
    def prompt(me, peer):
        wf = WorkflowBuilder()
        wf.add("EmShow", value=wf.add("EmRendezvous", me=me, peer=peer)[0])
        return wf.to_api()

    results = {}
    threads = [threading.Thread(target=lambda m=m, p=p: results.__setitem__(m, engine.run(prompt(m, p))))
               for m, p in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results["a"].outputs["2"] == {"value": ["a met b"]}
    assert results["b"].outputs["2"] == {"value": ["b met a"]}


# -- fixes found in review --------------------------------------------------------------------------
def test_a_fingerprint_that_raises_means_changed(engine):
    wf = WorkflowBuilder()
    wf.add("EmShow", value=wf.add("EmFlaky", x=1)[0])
    engine.run(wf.to_api())
    engine.run(wf.to_api())
    assert CALLS["EmFlaky"] == 2


def test_an_interrupt_between_nodes_names_where_it_stopped(engine):
    wf = WorkflowBuilder()
    a = wf.add("EmConst", value=1)
    wf.add("EmShow", value=wf.add("EmDouble", x=a[0])[0])
    flag, log = InterruptFlag(), EventLog()

    def sink(event):
        log(event)
        if isinstance(event, NodeFinished) and event.node_id == "1":
            flag.set()

    result = engine.run(wf.to_api(), sink=sink, interrupt=flag)
    assert result.status == "interrupted" and result.executed == ["1"]
    assert result.interrupted_at == "2"
    event = log.of(ExecutionInterrupted)[0]
    assert (event.node_id, event.class_type) == ("2", "EmDouble")


# -- a ComfyUI (V1) custom-node file using all of it ------------------------------------------------
V1_PACK = textwrap.dedent('''
    """Our own example of ComfyUI V1 custom nodes using lists, lazy inputs, expansion and async."""
    import asyncio

    CALLS = {}


    def count(name):
        CALLS[name] = CALLS.get(name, 0) + 1


    class SplitWords:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"default": "a b"})}}
        RETURN_TYPES = ("STRING",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "split"

        def split(self, text):
            return (text.split(),)


    class Shout:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"word": ("STRING", {"forceInput": True})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "shout"

        def shout(self, word):
            count("Shout:" + word)
            return (word.upper(),)


    class JoinWords:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"words": ("STRING", {"forceInput": True}), "sep": ("STRING", {"default": " "})}}
        RETURN_TYPES = ("STRING",)
        INPUT_IS_LIST = True
        OUTPUT_NODE = True
        FUNCTION = "join"

        def join(self, words, sep):
            text = sep[0].join(words)
            return {"ui": {"text": [text]}, "result": (text,)}


    class PickOne:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"first": ("BOOLEAN", {"default": True}),
                                 "a": ("STRING", {"lazy": True, "forceInput": True}),
                                 "b": ("STRING", {"lazy": True, "forceInput": True})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "pick"

        def check_lazy_status(self, first, a=None, b=None):
            return ["a"] if first else ["b"]

        def pick(self, first, a=None, b=None):
            return (a if first else b,)


    class Exclaim:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"forceInput": True}), "times": ("INT", {"default": 2, "min": 0})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "expand"

        def expand(self, text, times):
            graph, last = {}, None
            for i in range(times):
                source = text if last is None else [last, 0]
                graph[f"bang{i}"] = {"class_type": "Bang", "inputs": {"text": source}}
                last = f"bang{i}"
            return {"result": ([last, 0],) if last else (text,), "expand": graph}


    class Bang:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"forceInput": True})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "bang"

        def bang(self, text):
            return (text + "!",)


    class SlowEcho:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"forceInput": True})}}
        RETURN_TYPES = ("STRING",)
        FUNCTION = "echo"

        async def echo(self, text):
            await asyncio.sleep(0.01)
            return (text,)


    NODE_CLASS_MAPPINGS = {"SplitWords": SplitWords, "Shout": Shout, "JoinWords": JoinWords, "PickOne": PickOne,
                           "Exclaim": Exclaim, "Bang": Bang, "SlowEcho": SlowEcho}
''')


def test_a_v1_custom_node_file_with_lists_lazy_expand_and_async(lg_engine, lg_plugins_dir):
    (lg_plugins_dir / "em_v1_pack.py").write_text(V1_PACK)
    engine = lg_engine(Plugin(), builtins=False, plugins_dir=lg_plugins_dir)
    try:
        assert engine.host.plugins["em_v1_pack"].errors == []
        pack = next(m for name, m in sys.modules.items() if name.endswith("em_v1_pack"))
        wf = WorkflowBuilder()
        words = wf.add("SplitWords", text="red green blue")
        loud = wf.add("Shout", word=words[0])
        never = wf.add("Shout", word=wf.add("SplitWords", text="never")[0])
        pick = wf.add("PickOne", first=True, a=loud[0], b=never[0])
        bang = wf.add("Exclaim", text=pick[0], times=2)
        echo = wf.add("SlowEcho", text=bang[0])
        wf.add("JoinWords", words=echo[0], sep="-")
        result = assert_success(engine.run(wf.to_api()))
        assert result.outputs["8"] == {"text": ["RED!!-GREEN!!-BLUE!!"]}
        assert pack.CALLS == {"Shout:red": 1, "Shout:green": 1, "Shout:blue": 1}  # "never" was not shouted
        info = object_info(engine.registry, engine.settings)
        assert info["SplitWords"]["output_is_list"] == [True]
    finally:
        engine.close()
