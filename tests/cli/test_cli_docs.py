"""The reference docs keep up with the code: every setting, tool, route, command, subject action,
event type and error code is documented, and the README's test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from mistersmith.bridge.subjects import CONTROL_ACTIONS, NODE_ACTIONS
from mistersmith.cli import build_parser
from mistersmith.cli._settings import settings_reference
from mistersmith.envelope import ERROR_CODES
from mistersmith.supervisors import EVENT_TYPES
from mistersmith.web.app import ROUTES
from mistersmith.web.tools import TOOLS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text()


def test_configuration_reference_is_generated_from_settings() -> None:
    text = _read("reference/configuration.md")
    match = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert match is not None, "the settings table markers are missing"
    assert match.group(1) == settings_reference(), (
        "docs/reference/configuration.md is out of date: replace the table between the settings markers "
        "with the output of `mistersmith config --reference`"
    )


def test_mcp_reference_lists_every_tool() -> None:
    text = _read("reference/mcp.md")
    assert [t for t in TOOLS if f"| `{t}` |" not in text] == []


def test_http_reference_lists_every_route() -> None:
    text = _read("reference/http.md")
    assert [r for r in ROUTES if f" {r}` |" not in text] == []


def test_nats_reference_lists_every_action_event_type_and_error_code() -> None:
    text = _read("reference/nats.md")
    assert [a for a in CONTROL_ACTIONS if f"| `{a}` |" not in text] == []
    node_subject = re.search(r"\| `system\.node\.\{node\}\.\{([a-z_,]+)\}` \|", text)
    assert node_subject is not None, "the subjects table has no system.node.{node}.{...} row"
    assert node_subject.group(1).split(",") == list(NODE_ACTIONS)
    assert [t for t in EVENT_TYPES if f"`{t}`" not in text] == []
    assert [c for c in ERROR_CODES if f"`{c}`" not in text] == []


def test_cli_reference_documents_every_command() -> None:
    text = _read("reference/cli.md")
    names = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert [n for n in names if not re.search(rf"^## `{n}\b", text, re.M) and f", `{n} " not in text] == []


def test_readme_test_command_is_what_ci_runs() -> None:
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest"
    assert command in (ROOT / "README.md").read_text()
    assert command in (ROOT / ".ci" / "run").read_text()
