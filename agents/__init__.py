"""Complete agents composed from the library. Importing this package registers them
(`mbrl_sam.registry`): `agent=<name>` then builds one with `make_agent`."""

from __future__ import annotations

from agents import dreamer, storm, tdmpc
from mbrl_sam.registry import AGENTS, make_agent, register, typed

for _module in (dreamer, tdmpc, storm):
    register(_module.ENTRY)

__all__ = ["AGENTS", "make_agent", "typed"]
