"""``Runtime``: the facade a Python program embeds, sync or asyncio (see ``_runtime``)."""

from mistersmith.runtime._runtime import Runtime

__all__ = ["Runtime"]
