#!/usr/bin/env python3
"""A stand-in for `claude --print --output-format json`, for tests and examples.

Reads the prompt on stdin and answers like the real CLI: one JSON object on
stdout. Behaviour by flag: --fail (exit 3 with a message on stderr), --hang
(start a grandchild and wait forever; with PIDFILE set, write both pids
there), --bad-json, --text (plain text out), --stream-json (like
`--output-format stream-json`: one JSON line per word as it "thinks", then
a `{"type": "result"}` line; with --hang too, it hangs after the first word).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def hang() -> None:
    """Start a grandchild and wait forever (with PIDFILE set, write both pids there first)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    pidfile = os.environ.get("PIDFILE")
    if pidfile:
        with open(pidfile + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
        os.replace(pidfile + ".tmp", pidfile)
    print("fake_claude: thinking very hard", file=sys.stderr, flush=True)


def main() -> int:
    prompt = sys.stdin.read()
    args = set(sys.argv[1:])
    if "--fail" in args:
        print(f"fake_claude: cannot answer {prompt!r}", file=sys.stderr)
        return 3
    if "--stream-json" in args:
        words = prompt.split() or [""]
        if "--hang" in args:
            hang()
            print(json.dumps({"type": "assistant", "text": words[0], "index": 0}), flush=True)
            time.sleep(3600)
            return 0
        for i, word in enumerate(words):
            print(json.dumps({"type": "assistant", "text": word, "index": i}), flush=True)
        print(json.dumps({"type": "result", "is_error": False, "result": f"You said: {prompt.strip()}",
                          "words": len(prompt.split())}), flush=True)
        return 0
    if "--hang" in args:
        hang()
        time.sleep(3600)
        return 0
    if "--bad-json" in args:
        print("{not json")
        return 0
    answer = f"You said: {prompt.strip()}"
    if "--text" in args:
        print(answer)
        return 0
    print(json.dumps({"type": "result", "is_error": False, "result": answer, "words": len(prompt.split())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
