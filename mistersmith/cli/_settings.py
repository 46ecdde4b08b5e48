"""Settings from the command line: the flags that map onto ``mistersmith.config`` keys,
and the ``config`` command that prints the effective result.

Precedence is ``mistersmith.config``'s: flags, then ``MISTERSMITH_*``
environment variables, then the ``--config`` TOML file (else ``mistersmith.toml``
in the working directory, when there is one), then the defaults.
Flag values are handed over as typed, so a bad one is refused by the same
validation as a bad environment variable or file entry (exit code 2).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mistersmith.config import SETTINGS, Settings, load_settings

from ._output import Output

__all__ = ["FLAG_KEYS", "load", "run_config", "settings_reference", "settings_text"]

FLAG_KEYS: dict[str, str] = {
    "data_dir": "node.data_dir",
    "node_id": "node.id",
    "max_agents": "node.max_agents",
    "http_host": "http.host",
    "http_port": "http.port",
    "nats_url": "nats.url",
    "allow_remote_shutdown": "nats.allow_remote_shutdown",
    "database_url": "database.url",
    "log_level": "logging.level",
    "log_format": "logging.format",
}
"""argparse ``dest`` -> settings key, for every flag that sets a setting."""

DEFAULT_CONFIG_FILE = "mistersmith.toml"
"""Read from the working directory when neither ``--config`` nor ``MISTERSMITH_CONFIG`` names a file."""


def load(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """The effective settings for this run (``ConfigError`` for a bad value anywhere)."""
    flags: dict[str, Any] = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        flags[key] = value.upper() if dest == "log_level" else value
    config = getattr(args, "config", None)
    if config is None and Path(DEFAULT_CONFIG_FILE).is_file():
        config = str(Path(DEFAULT_CONFIG_FILE).resolve())  # found in the working directory, as --config would
    return load_settings(flags, os.environ if env is None else env, config)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def settings_text(settings: Settings) -> str:
    """The settings as TOML (usable as a ``--config`` file), each line with where its value came from.

    Unset settings are commented out; secrets show as ``"***"`` (URLs: without their ``user:password@``).
    """
    masked = settings.as_dict(mask_secrets=True)
    lines: list[str] = []
    section = ""
    for setting in SETTINGS:
        sect, name = setting.key.split(".", 1)
        if sect != section:
            lines.append(("\n" if lines else "") + f"[{sect}]")
            section = sect
        value = masked[sect][name]
        source = settings.sources.get(setting.key, "default")
        where = "default" if source == "default" else f"from {source}"
        if value is None:
            lines.append(f"# {name} is not set  ({where}; {setting.help})")
        else:
            lines.append(f"{name} = {_toml(value)}  # {where}")
    return "\n".join(lines)


def _shown_default(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, (tuple, dict)) and not value:
        return "(none)"
    return f"`{_toml(value)}`"


def settings_reference() -> str:
    """Every setting as a Markdown table (docs/reference/configuration.md is made from it)."""
    rows = ["| Setting | Environment variable | Default | What it is |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        secret = "" if not setting.secret else (
            " (secret: each token_sha256 shown as `***`)" if setting.key == "auth.tokens" else
            " (secret: each password shown as `***`)" if setting.key == "auth.nats_users" else
            " (secret: shown without its `user:password@`)" if setting.shown else " (secret: shown as `***`)")
        rows.append(f"| `{setting.key}` | `{setting.env}` | {_shown_default(setting.default)} | "
                    f"{setting.help}{secret} |")
    return "\n".join(rows)


def run_config(args: argparse.Namespace, out: Output) -> int:
    if args.reference:
        out.result({"settings": [{"key": s.key, "env": s.env, "default": s.default, "secret": s.secret,
                                  "help": s.help} for s in SETTINGS]}, settings_reference())
        return 0
    settings = load(args)
    doc = {"settings": settings.as_dict(mask_secrets=True), "sources": dict(settings.sources)}
    out.result(doc, lambda: settings_text(settings))
    return 0
