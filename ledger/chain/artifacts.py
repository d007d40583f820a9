"""Compiled contract artifacts shipped inside the package (``ledger/chain/artifacts/*.json``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["load_artifact"]


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """Return the artifact of contract ``name`` (keys ``abi``, ``bytecode``, ``deployedBytecode``, ...).

    The result is cached and shared between callers: treat it as read-only.
    Raises :class:`FileNotFoundError` for an unknown contract.
    """
    resource = resources.files("ledger.chain").joinpath("artifacts", f"{name}.json")
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no compiled artifact for contract {name!r}") from None
    return json.loads(text)
