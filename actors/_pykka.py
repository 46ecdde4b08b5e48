"""``ActorBase``: pykka's ``ThreadingActor``, as ``Agent`` builds on it.

At run time it *is* ``pykka.ThreadingActor``. For type checkers it names only
what ``Agent`` uses of it. pykka's lifecycle hooks (``on_start``, ``on_stop``,
``on_failure``, typed ``-> None`` there) are left out: pykka never calls them
here (an incarnation's own thread does, in ``Agent._lifecycle``), and
``Agent``'s may be ``async def``, which pykka's signatures would refuse in
every subclass under ``mypy --strict``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

import pykka

__all__ = ["ActorBase"]

if TYPE_CHECKING:

    class ActorBase:
        """What ``Agent`` uses of ``pykka.ThreadingActor`` (see the module docstring)."""

        use_daemon_thread: ClassVar[bool]
        actor_inbox: Any
        actor_stopped: threading.Event
        _actor_ref: pykka.ActorRef[Any]

        @property
        def actor_ref(self) -> pykka.ActorRef[Any]: ...

        def on_receive(self, message: Any) -> Any: ...

        def _handle_receive(self, message: Any) -> Any: ...

else:
    ActorBase = pykka.ThreadingActor
