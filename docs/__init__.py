"""The documentation, shipped in the wheel as ``mistersmith.docs`` (``mistersmith --help`` names
the installed copy of ``reference/cli.md``)."""
