"""A circuit breaker and retries around a flaky dependency, surviving a restart.

The agent calls a "model" that is down. Each command tries it twice, with
exponential backoff and jitter (``self.retry``) within the command's
deadline, and every failed attempt counts on the breaker. The first command
lets the ``ConnectionError`` through: the agent crashes and is restarted, and
its breaker keeps the count (two). The next failure is the third in a row and
opens it (one ``breaker_open`` supervision event): calls now fail at once with
``breaker_open``, without reaching the model, and the agent lives. Once the
model is back and ``reset_s`` has passed, a trial call closes it. (Its times
are short so that it runs in a second; a real dependency would keep the
defaults, ``failure_threshold=5, reset_s=30``.)

Run: ``python examples/circuit_breaker.py``
"""

from __future__ import annotations

import time

from mistersmith import Agent, BreakerOpenError, Runtime, SupervisorSpec, command

MODEL_UP = False
RESET_S = 0.5


def call_model(prompt: str) -> str:
    if not MODEL_UP:
        raise ConnectionError("model endpoint refused the connection")
    return prompt.upper()


class Writer(Agent):
    @command
    def draft(self, prompt: str) -> str:
        model = self.breaker("model", failure_threshold=3, reset_s=RESET_S)
        for attempt in self.retry(attempts=2, initial_s=0.05, jitter_s=0.02):
            with attempt, model:
                return call_model(prompt)
        raise AssertionError("unreachable: the retry returns or raises")

    @command
    def breaker_state(self) -> str:
        return self.breaker("model", failure_threshold=3, reset_s=RESET_S).state


def main() -> None:
    global MODEL_UP
    with Runtime(root=SupervisorSpec("root", intensity=10, backoff=None)) as rt:
        rt.spawn(Writer, "writer", command_timeout_s=10)
        for _ in range(2):
            try:
                rt.ask("writer", "draft", {"prompt": "hello"}, timeout=5)
            except Exception as exc:  # the handler let the ConnectionError through: a crash, and a restart
                print(f"draft failed: {type(exc).__name__}")
        print("breaker:", rt.get_agent("writer")["breakers"]["model"]["state"],
              "| restarts:", rt.get_agent("writer")["restart_count"])
        try:
            rt.ask("writer", "draft", {"prompt": "hello"}, timeout=5)
        except BreakerOpenError as exc:
            print(f"refused at once: {exc.code} (retry after at most {RESET_S} s)")
        print("breaker_open events:", len(rt.history(event_types=["breaker_open"])))
        MODEL_UP = True
        time.sleep(RESET_S)  # the breaker's reset_s
        print("after reset_s:", rt.ask("writer", "breaker_state", timeout=5))
        print("trial call:", rt.ask("writer", "draft", {"prompt": "hello"}, timeout=5))
        print("breaker:", rt.get_agent("writer")["breakers"]["model"]["state"])


if __name__ == "__main__":
    main()
