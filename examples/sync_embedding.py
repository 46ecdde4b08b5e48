"""Embed MisterSmith in a plain synchronous program.

Spawns a custom agent and the built-in ``echo``, asks them, crashes one and
watches its supervisor restart it, then replays the supervision events.
Run: ``python examples/sync_embedding.py``
"""

from __future__ import annotations

from typing import Any

from mistersmith import Agent, AgentFailedError, CommandError, Runtime, command


class Greeter(Agent):
    """Greets people; refuses empty names with a CommandError (the agent lives on)."""

    @command("greet")
    def greet(self, name: str) -> dict[str, Any]:
        if not name:
            raise CommandError("name must not be empty", code="empty_name")
        return {"greeting": f"{self.config.get('greeting', 'Hello')}, {name}!"}


def main() -> None:
    with Runtime(kinds={"greeter": Greeter}) as rt:
        greeter = rt.spawn("greeter", agent_id="greeter-1", config={"greeting": "Hi"})
        print(rt.ask(greeter, "greet", {"name": "Ada"}, timeout=5))
        try:
            rt.ask(greeter, "greet", {"name": ""}, timeout=5)
        except CommandError as exc:
            print("refused:", exc.code, exc.message)

        echo = rt.spawn("echo", agent_id="echo-1")
        try:
            rt.ask(echo, "fail", timeout=5)
        except AgentFailedError as exc:
            print("crashed:", exc.reason)
        print("after restart:", rt.ask(echo, "echo", {"still": "here"}, timeout=5))
        print("restart_count:", rt.get_agent(echo)["restart_count"])

        for event in rt.history(agent_id=echo):
            print(f"  #{event.seq} {event.event_type:<10} {event.reason or ''}")


if __name__ == "__main__":
    main()
