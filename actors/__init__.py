"""Agents: supervised pykka actors with marked command handlers.

Imported as ``mistersmith.actors``.
"""

from mistersmith.actors._agent import Agent, AgentState
from mistersmith.actors._command import CommandSpec, command
from mistersmith.actors._context import AgentContext, Counters
from mistersmith.actors._mailbox import Command, Envelope, Exit, Mailbox, ThreadReply
from mistersmith.actors.echo import EchoAgent
from mistersmith.actors.process import ProcessAgent, ProcessFailed

__all__ = [
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
    "ThreadReply",
    "command",
]
