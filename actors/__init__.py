"""Agents: supervised pykka actors with marked command handlers.

Imported as ``mistersmith.actors``.
"""

from mistersmith.actors._agent import Agent, AgentState
from mistersmith.actors._command import CommandSpec, command
from mistersmith.actors._context import AgentContext, Counters
from mistersmith.actors._mailbox import Command, Envelope, Exit, Mailbox, Reply, ThreadReply, deliver
from mistersmith.actors.echo import EchoAgent
from mistersmith.actors.process import DEFAULT_INHERITED_ENV, ProcessAgent, ProcessFailed
from mistersmith.actors.process_kind import ProcessKind

__all__ = [
    "DEFAULT_INHERITED_ENV",
    "Agent",
    "AgentContext",
    "AgentState",
    "Command",
    "CommandSpec",
    "Counters",
    "EchoAgent",
    "Envelope",
    "Exit",
    "Mailbox",
    "ProcessAgent",
    "ProcessFailed",
    "ProcessKind",
    "Reply",
    "ThreadReply",
    "command",
    "deliver",
]
