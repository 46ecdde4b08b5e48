"""What a URL looks like when it is shown: without the ``user:password@`` in it.

A pure module. NATS (and other) URLs may carry credentials in their userinfo
(``nats://user:pass@host:4222``, ``nats://token@host``). Wherever a node
shows or writes a URL (``/health``, the ``serve`` banner, ``node.json``,
``mistersmith config``, logs), it shows ``strip_userinfo(url)``; the real URL
is used only to connect.
"""

from __future__ import annotations

import re

_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"]*@")  # up to the last @, as strip_userinfo

__all__ = ["strip_userinfo", "strip_userinfo_in"]


def strip_userinfo(urls: str) -> str:
    """``urls`` (one URL or a comma-separated list) with every userinfo part removed.

    Everything up to the last ``@`` after the scheme goes: a password with an
    unescaped ``/``, ``#`` or ``@`` in it is still removed whole (a path that
    held an ``@`` would lose more than the userinfo, which errs on the safe side).
    """
    return ",".join(_strip_one(url) for url in urls.split(","))


def _strip_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def strip_userinfo_in(text: str) -> str:
    """``text`` (a message, such as argparse's, that may quote a URL) with every URL's userinfo removed."""
    return _URL_USERINFO.sub(r"\1", text)
