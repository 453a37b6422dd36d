"""The server validates each prompt once: at ``POST /prompt``; the worker runs that graph.

Counted by a real plugin node whose ``check_inputs`` (called once per validation pass) records
each call. Bars, fixed before running: one accepted prompt → exactly one pass; a prompt whose file
vanished between acceptance and run still gets one pass and fails at run time with an
``execution_error`` naming the node and the input (no traceback, the server keeps serving).
"""

from __future__ import annotations

from server_kit import chain, run, serving

from latentgraph import In, Node, NodeInputError, NodeResult, NodeSpec, hookimpl
from latentgraph.server.validated import ValidatedGraphs
from latentgraph.testing import WorkflowBuilder


class CountingPlugin:
    """Registers ``CountedRead``: reads a file of the input folder; counts validation passes."""

    def __init__(self) -> None:
        self.passes: list[str] = []
        passes = self.passes

        def files(settings, registry):
            return sorted(p.name for p in settings.input_dir.glob("*.txt"))

        class CountedRead(Node):
            spec = NodeSpec(name="CountedRead", inputs=(In("name", "COMBO", choices=files),), output_node=True)

            @classmethod
            def check_inputs(cls, settings, inputs):
                passes.append(inputs["name"])
                return []

            def execute(self, ctx, name):
                path = ctx.settings.input_dir / name
                if not path.is_file():
                    raise NodeInputError("name", f"'{name}' is no longer in the input folder")
                return NodeResult(ui={"text": [path.read_text()]})

        self.node = CountedRead

    @hookimpl
    def register_nodes(self):
        return [self.node]


def counted(name: str) -> dict:
    wf = WorkflowBuilder()
    wf.add("CountedRead", id="1", name=name)
    return wf.to_api()


def test_an_accepted_prompt_is_validated_once(lg_settings):
    plugin = CountingPlugin()
    lg_settings.input_dir.mkdir(parents=True, exist_ok=True)
    (lg_settings.input_dir / "a.txt").write_text("hello")

    async def go():
        async with serving(lg_settings, ("counting", plugin)) as client:
            ws = await client.ws("c1")
            reply = await client.submit(counted("a.txt"), "c1")
            done = await ws.until_done(reply["prompt_id"])
            return reply, done

    reply, done = run(go())
    assert reply["node_errors"] == {}
    assert ("executed", {"node": "1", "display_node": "1", "output": {"text": ["hello"]}, "prompt_id": reply["prompt_id"]}) in done
    assert [kind for kind, _ in done if kind.startswith("execution_") and kind != "execution_cached"][-1] == "execution_success"
    assert plugin.passes == ["a.txt"]  # the route's pass only: the worker ran the graph it made


def test_a_file_that_vanishes_after_acceptance_fails_the_node_that_reads_it(lg_settings):
    plugin = CountingPlugin()
    lg_settings.input_dir.mkdir(parents=True, exist_ok=True)
    victim = lg_settings.input_dir / "b.txt"
    victim.write_text("soon gone")

    async def go():
        async with serving(lg_settings, ("counting", plugin)) as client:
            ws = await client.ws("c2")
            busy = await client.submit(chain(1, steps=4, delay=0.25), "c2")  # keeps the worker busy
            reply = await client.submit(counted("b.txt"), "c2")
            victim.unlink()
            await ws.until_done(busy["prompt_id"])
            done = await ws.until_done(reply["prompt_id"])
            again = await client.submit(chain(2), "c2")  # still serving
            await ws.until_done(again["prompt_id"])
            return done

    done = run(go())
    errors = [data for kind, data in done if kind == "execution_error"]
    assert len(errors) == 1
    assert errors[0]["node_id"] == "1" and errors[0]["node_type"] == "CountedRead"
    assert errors[0]["input_name"] == "name" and "no longer in the input folder" in errors[0]["exception_message"]
    assert plugin.passes == ["b.txt"]


def test_kept_graphs_are_never_handed_to_another_prompt():
    graphs = ValidatedGraphs(limit=2)
    first, second, third = object(), object(), object()
    assert graphs.offer("p", first)
    assert not graphs.offer("p", second)  # a duplicate id never replaces the kept graph
    graphs.withdraw("p", second)  # the refused duplicate withdraws only its own
    assert graphs.take("p") is first and graphs.take("p") is None
    graphs.offer("a", first), graphs.offer("b", second), graphs.offer("c", third)
    assert len(graphs) == 2 and graphs.take("a") is None  # the oldest is dropped: validated again later
    graphs.discard(["b"])
    assert graphs.take("b") is None and graphs.take("c") is third
