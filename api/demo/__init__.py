"""``pledgeledger demo``: the three modes of the source articles played against a running service.

:func:`run` plays the chosen scenes (:mod:`api.demo.scenes`) in order, then prints the closing report:
every claim the demo makes with the proof that backs it, and whether that proof was checked against the
chain. Organisations are created the way an operator creates them (``pledgeledger org create`` against
the service's database); from then on everything goes through the public API with the parties' own keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from api.demo.scenes import SCENES
from api.demo.world import DemoError, World

__all__ = ["SCENES", "run"]


def run(url: str, make_party: Callable[[str, str, str], str], scenes: Sequence[str], console: Console) -> int:
    """Play ``scenes`` against the service at ``url``; 0 if every checked claim held, 1 otherwise."""
    world = World(url, console, make_party=make_party)
    console.print(f"service at {url}: chain {world.health['chain']['id']} ({world.rpc_url or 'no JSON-RPC URL'}), db {world.health['db']}")
    failed: str | None = None
    try:
        for name in scenes:
            try:
                SCENES[name](world)
            except DemoError as exc:
                failed = f"{name}: {exc}"
                console.print(f"[red]scene {name} stopped[/]: {exc}")
    finally:
        world.close()
    report = Table(title="What happened, and what proves it", show_lines=False)
    for column in ("scene", "claim", "proof", "checked"):
        report.add_column(column, overflow="fold")
    for claim in world.claims:
        mark = {True: "[green]verified[/]", False: "[red]FAILED[/]", None: "[dim]pointer[/]"}[claim.verified]
        report.add_row(claim.scene, claim.claim, claim.proof, mark)
    console.print(report)
    console.print(f"API docs: {url}/docs")
    return 1 if failed or any(c.verified is False for c in world.claims) else 0
