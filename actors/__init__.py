"""Agents: supervised pykka actors with marked command handlers.

Imported as ``mistersmith.actors``.
"""

from mistersmith.actors._agent import Agent, AgentState
from mistersmith.actors._breaker import BREAKER_STATES, CircuitBreaker
from mistersmith.actors._cancel import cancel_letter
from mistersmith.actors._command import CommandSpec, command
from mistersmith.actors._context import AgentContext, Counters
from mistersmith.actors._durable import STATE_ON_RESTART, DurableOptions
from mistersmith.actors._mailbox import Exit, Letter, Mailbox, Order, ReplySlot, ThreadReply, deliver
from mistersmith.actors._progress import STREAM_MAXSIZE, Progress, ThreadStream
from mistersmith.actors.echo import EchoAgent
from mistersmith.actors.process import DEFAULT_INHERITED_ENV, ProcessAgent, ProcessFailed
from mistersmith.actors.process_kind import ProcessKind

__all__ = [
    "Agent",
    "AgentContext",
    "AgentState",
    "BREAKER_STATES",
    "CircuitBreaker",
    "CommandSpec",
    "Counters",
    "DEFAULT_INHERITED_ENV",
    "DurableOptions",
    "EchoAgent",
    "Exit",
    "Letter",
    "Mailbox",
    "Order",
    "ProcessAgent",
    "ProcessFailed",
    "ProcessKind",
    "Progress",
    "ReplySlot",
    "STATE_ON_RESTART",
    "STREAM_MAXSIZE",
    "ThreadReply",
    "ThreadStream",
    "cancel_letter",
    "command",
    "deliver",
]
