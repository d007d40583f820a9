#!/usr/bin/env python3
"""Gas of every CollateralRegistry transition, beside TradeTrust's title-escrow figures.

Deploys CollateralRegistry on a fresh chain (by default the embedded py-evm chain the ledger uses),
registers a warehouse, an enterprise and a bank (each with its own key, proving possession), and runs
every lifecycle transition with real EIP-712 signatures made in Python (ledger.chain.collateral):

  lot A: register, verify, pledge, partial release, substitution (in, out), margin call by the bank,
         cure with goods, margin call by the supervision key, cure with cash, freeze, unfreeze,
         release, close
  lot B: register, verify, pledge, freeze by the supervision key, default, enforcement, close
  lot D: register, verify, pledge, margin call by the supervision key, its cure period passes (chain
         time moved on where the chain allows it), default of the uncured call by the supervision key
  lot C: register, close (never pledged)
  and a signer rotation.

Signers have used a nonce before (registering an organisation consumes the signer's first one), as
every signer in production has, so nonce updates cost what they cost in steady state.

Prints a Markdown table; --json prints one JSON object instead (pledge_gas, release_gas,
register_lot_gas, every transition's gas, the targets). Exit status 1 with --check if a target
(register lot <= 150k, pledge <= 100k, release <= 60k) is exceeded.

    .venv/bin/python scripts/bench_gas.py
    .venv/bin/python scripts/bench_gas.py --devices 3 --json
    .venv/bin/python scripts/bench_gas.py --chain http://127.0.0.1:8545 --relayer-key 0x...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ledger.chain import ANVIL_DEV_KEY, open_chain  # noqa: E402
from ledger.chain.collateral import (  # noqa: E402
    ACTIONS,
    CollateralClient,
    Role,
    deploy_collateral_registry,
    identifier_hash,
    sign_typed_data,
    unit_code,
)

#: TradeTrust title escrow (OpenAttestation), gas measured by its authors' tests: mint, pledge
#: (transferHolder to the bank) and release (back to the owner). TOOLCHAIN.md "Gas reference points".
TRADETRUST = {"registerLot": 282_071, "pledge": 78_023, "release": 58_693}
TARGETS = {"registerLot": 150_000, "pledge": 100_000, "release": 60_000}
TRADETRUST_NAMES = {"registerLot": "mint", "pledge": "pledge", "release": "release"}
DEADLINE_SLACK = 3600
CURE_PERIOD_S = 86400


@dataclass
class Bench:
    registry: CollateralClient
    keys: dict[str, LocalAccount]  # role name -> key; "supervisor" included
    orgs: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[str, str, int]] = field(default_factory=list)  # (transition, signers, gas)

    def deadline(self) -> int:
        chain = self.registry.chain
        return chain.reader.block_timestamp(chain.block_number()) + DEADLINE_SLACK

    def run(self, action: str, signers: list[str], *, label: str | None = None, approver: str | None = None,
            **fields: Any) -> int:
        """Prepare ``action``, sign it with the keys of ``signers`` (in order), submit; record the gas."""
        typed = self.registry.prepare(action, deadline=self.deadline(), approver=approver, **fields)
        signatures = [sign_typed_data(self.keys[name].key, typed) for name in signers]
        gas = self.registry.submit(typed, signatures).gas_used
        self.rows.append((label or ACTIONS[action].function, " + ".join(signers), gas))
        return gas


def _advance_time(chain: Any, seconds: int) -> bool:
    """Move the chain's clock ``seconds`` on (py-evm: ``testing_timeTravel``; anvil, Hardhat: ``evm_increaseTime``);
    ``False`` on a chain that cannot."""
    w3 = chain.reader.w3
    target = chain.reader.block_timestamp(chain.block_number()) + seconds
    for method, params in (("testing_timeTravel", [target]), ("evm_increaseTime", [seconds])):
        try:
            response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a chain without the method
            continue
        if "error" not in response:
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            return True
    return False


def _h(tag: str) -> bytes:
    return keccak(text=f"bench:{tag}")


def run(chain_spec: str, relayer_key: str | None, devices: int) -> Bench:
    with tempfile.TemporaryDirectory() as tmp, open_chain(chain_spec, Path(tmp), relayer_key=relayer_key) as handle:
        chain = handle.client
        keys = {name: Account.from_key(keccak(text=f"pledgeledger bench {name}"))
                for name in ("warehouse", "enterprise", "bank", "supervisor", "newbank")}  # fmt: skip
        address = deploy_collateral_registry(chain, supervisor=keys["supervisor"].address)
        bench = Bench(CollateralClient(chain, address), keys)

        for name, role in (("warehouse", Role.WAREHOUSE), ("enterprise", Role.ENTERPRISE), ("bank", Role.BANK)):
            bench.run("RegisterOrganisation", [name], label=f"registerOrganisation ({name})",
                      role=int(role), signer=keys[name].address, name=f"Bench {name}")  # fmt: skip
            bench.orgs[name] = bench.registry.organisation_of(keys[name].address)
        wh, ent, bank = bench.orgs["warehouse"], bench.orgs["enterprise"], bench.orgs["bank"]

        def register(tag: str) -> bytes:
            lot = identifier_hash(f"bench-receipt-{tag}")
            bench.run("RegisterLot", ["warehouse"], lot=lot, warehouse=wh, enterprise=ent, goods=_h(f"goods-{tag}"),
                      quantity=10_000, unit=unit_code("kg"),
                      devices=[identifier_hash(f"bench-{tag}-scale-{i}") for i in range(devices)])  # fmt: skip
            bench.run("VerifyLot", ["warehouse", "enterprise"], lot=lot, assay=_h(f"assay-{tag}"), quantity=10_000)
            return lot

        def pledge(lot: bytes, tag: str) -> None:
            bench.run("Pledge", ["enterprise", "bank", "warehouse"], lot=lot, bank=bank,
                      registration=identifier_hash(f"bench-registration-{tag}"), terms=_h(f"terms-{tag}"),
                      quantity=10_000, minQuantity=6_000)  # fmt: skip

        lot_a = register("a")
        pledge(lot_a, "a")
        bench.run("PartialRelease", ["bank", "warehouse"], lot=lot_a, quantity=1_000)
        substitution = {"goods": _h("goods-a2"), "assay": _h("assay-a2"), "quantityIn": 2_000, "quantityOut": 2_500}
        bench.run("SubstituteIn", ["enterprise", "warehouse"], lot=lot_a, **substitution)
        bench.run("SubstituteOut", ["bank", "warehouse"], lot=lot_a, **substitution)
        bench.run("MarginCall", ["bank"], label="marginCall (bank)", approver=keys["bank"].address,
                  lot=lot_a, reason=_h("ltv-over-warning"), cureBy=bench.deadline() + CURE_PERIOD_S)  # fmt: skip
        bench.run("CureWithGoods", ["warehouse"], lot=lot_a, goods=_h("goods-a3"), assay=_h("assay-a3"),
                  quantityIn=500)  # fmt: skip
        bench.run("MarginCall", ["supervisor"], label="marginCall (supervision key)",
                  approver=keys["supervisor"].address, lot=lot_a, reason=_h("price-feed"),
                  cureBy=bench.deadline() + CURE_PERIOD_S)  # fmt: skip
        bench.run("CureWithCash", ["bank"], lot=lot_a, payment=_h("payment-1"))
        bench.run("Freeze", ["warehouse"], label="freeze (warehouse)", approver=keys["warehouse"].address,
                  lot=lot_a, reason=_h("geofence-exit"))  # fmt: skip
        bench.run("Unfreeze", ["bank", "warehouse"], lot=lot_a)
        bench.run("Release", ["bank", "warehouse"], lot=lot_a, quantity=bench.registry.lot(lot_a).quantity)
        bench.run("ClosePledged", ["bank", "warehouse"], label="close (after release)", lot=lot_a)

        lot_b = register("b")
        pledge(lot_b, "b")
        bench.run("Freeze", ["supervisor"], label="freeze (supervision key)", approver=keys["supervisor"].address,
                  lot=lot_b, reason=_h("weight-drop"))  # fmt: skip
        bench.run("Default", ["bank"], lot=lot_b, reason=_h("loan-default"))
        bench.run("Enforce", ["bank", "warehouse"], lot=lot_b)
        bench.run("ClosePledged", ["bank", "warehouse"], label="close (after enforcement)", lot=lot_b)

        lot_d = register("d")
        pledge(lot_d, "d")
        bench.run("MarginCall", ["supervisor"], label="marginCall (supervision key)", approver=keys["supervisor"].address,
                  lot=lot_d, reason=_h("price-feed-d"), cureBy=bench.deadline() + CURE_PERIOD_S)  # fmt: skip
        if _advance_time(chain, 2 * CURE_PERIOD_S + DEADLINE_SLACK):
            bench.run("DefaultUncured", ["supervisor"], label="defaultUncured (supervision key)",
                      approver=keys["supervisor"].address, lot=lot_d, reason=_h("price-feed-d"))  # fmt: skip

        lot_c = identifier_hash("bench-receipt-c")
        bench.run("RegisterLot", ["warehouse"], label="registerLot (never pledged)", lot=lot_c, warehouse=wh,
                  enterprise=ent, goods=_h("goods-c"), quantity=1, unit=unit_code("t"),
                  devices=[identifier_hash(f"bench-c-scale-{i}") for i in range(devices)])  # fmt: skip
        bench.run("Close", ["warehouse"], label="close (never pledged)", lot=lot_c)

        bench.run("RotateSigner", ["bank", "newbank"], org=bank, newSigner=keys["newbank"].address)
        return bench


def first_gas(bench: Bench, function: str) -> int:
    return next(gas for label, _, gas in bench.rows if label == function)


def summary(bench: Bench, devices: int) -> dict[str, Any]:
    headline = {name: first_gas(bench, name) for name in TARGETS}
    return {
        "register_lot_gas": headline["registerLot"],
        "pledge_gas": headline["pledge"],
        "release_gas": headline["release"],
        "devices_per_lot": devices,
        "targets": {name: TARGETS[name] for name in TARGETS},
        "within_targets": all(headline[name] <= TARGETS[name] for name in TARGETS),
        "tradetrust": {TRADETRUST_NAMES[name]: TRADETRUST[name] for name in TRADETRUST},
        "transitions": [{"transition": label, "signers": signers, "gas": gas} for label, signers, gas in bench.rows],
    }


def markdown(bench: Bench, devices: int) -> str:
    lines = [
        f"CollateralRegistry gas per transition (whole transaction, {devices} supervising device(s) per lot)",
        "",
        "| transition | signatures | gas | TradeTrust | target |",
        "|---|---|---:|---:|---:|",
    ]
    seen: set[str] = set()
    for label, signers, gas in bench.rows:
        headline = label in TARGETS and label not in seen
        seen.add(label)
        tradetrust = f"{TRADETRUST[label]:,} ({TRADETRUST_NAMES[label]})" if headline else ""
        target = f"≤ {TARGETS[label]:,}" if headline else ""
        lines.append(f"| {label} | {signers} | {gas:,} | {tradetrust} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--chain", default="embedded",
                        help="'embedded' (in-process py-evm, the default), 'managed' (our own anvil) or an "
                             "http(s):// JSON-RPC URL")  # fmt: skip
    parser.add_argument("--relayer-key", default=None,
                        help="hex private key that deploys and submits; required for a URL "
                             f"(anvil's dev account is {ANVIL_DEV_KEY[:10]}...)")  # fmt: skip
    parser.add_argument("--devices", type=int, default=1, metavar="N",
                        help="supervising devices per lot (1-16, default 1); each more adds one storage slot "
                             "to registerLot")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the Markdown table")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a gas target is exceeded")
    args = parser.parse_args(argv)
    if not 1 <= args.devices <= 16:
        parser.error("--devices must be between 1 and 16")

    bench = run(args.chain, args.relayer_key, args.devices)
    result = summary(bench, args.devices)
    print(json.dumps(result, indent=2) if args.json else markdown(bench, args.devices))
    if args.check and not result["within_targets"]:
        print("gas target exceeded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
