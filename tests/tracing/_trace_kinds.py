"""The kind the remote node of the tracing test serves (``serve --kind crasher=_trace_kinds:Crasher``)."""

from __future__ import annotations

from mistersmith import Agent, command


class Crasher(Agent):
    kind = "crasher"

    @command("work")
    def work(self) -> str:
        return "worked"

    @command("crash")
    def crash(self) -> None:
        raise RuntimeError("crashed on purpose, to be traced")
