#!/usr/bin/env python3
"""Anchoring benchmark: gas per checkpoint, gas per reading and proof bundle size, per batch size.

Run it with the project's interpreter::

    .venv/bin/python scripts/bench_anchor.py                       # embedded py-evm, and anvil if installed
    .venv/bin/python scripts/bench_anchor.py --sizes 1000,65536 --json
    PLEDGELEDGER_RELAYER_KEY=0x... .venv/bin/python scripts/bench_anchor.py --chain https://rpc.example.org

For every chain it deploys fresh contracts (``DeviceRegistry`` and ``ReadingAnchor``), registers
one simulated ES256 device, anchors one warm-up checkpoint (index 0 has no previous checkpoint to
read, so it is cheaper than every later one and is reported apart), then for each batch size N:

1. builds the OpenZeppelin-standard tree of one real signed reading and N - 1 other leaves;
2. anchors its root with ``checkpoint(index, root)`` and reads the receipt's ``gasUsed``: the gas
   per checkpoint, and that divided by N, the gas per reading (the checkpoint costs the same
   whatever N is: only the root goes on chain);
3. builds the SPEC §4 proof bundle of the real reading with the ledger's own builder
   (``attestation.build_bundle``, what ``GET /v1/readings/{id}/proof`` serves), verifies it
   against the chain (``verify_bundle`` with facts read through JSON-RPC or py-evm), and reports
   its size as compact JSON, the way the API sends it. A proof has ceil(log2 N) or one fewer
   sibling hashes, 69 bytes of JSON each; the depth of the sampled reading is printed.

Nothing is written outside a temporary directory. Exit status 1 if a bundle does not verify or a
checkpoint costs more than the issue's budget of 48,000 gas.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
    sys.path.insert(0, str(ROOT))

from attestation import StandardTree, build_bundle, chain_query, key_fingerprint, parse_reading, verify_bundle  # noqa: E402
from ledger.chain import ChainError, ensure_deployment, find_anvil, open_chain  # noqa: E402
from ledger.simulator import SimulatedDevice  # noqa: E402

GAS_BUDGET = 48_000
DEFAULT_SIZES = (1_000, 10_000, 65_536)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(name: str, spec: str, sizes: list[int], *, relayer_key: str | None) -> dict[str, Any]:
    """Deploy on chain ``spec`` and anchor one batch of each size; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as tmp, open_chain(
        spec, Path(tmp), relayer_key=relayer_key
    ) as handle:
        client = handle.client
        ensure_deployment(client, Path(tmp))
        log(f"{name}: chain {client.chain_id}, anchor {client.anchor_address}")
        device = SimulatedDevice("bench-scale-01", "load_cell", lot="LOT-BENCH")
        client.register_device(device.id, key_fingerprint(device.public_key_pem), device.alg, int(time.time()) - 60)

        start = client.size()
        warm_up = None
        if start == 0:
            warm_up = client.checkpoint(0, os.urandom(32)).gas_used
        batches = []
        for n in sizes:
            envelope = device.reading({"weight_kg": 1250.5})
            digest = parse_reading(envelope).digest
            salt = os.urandom(32)
            began = time.perf_counter()
            tree = StandardTree.of([(os.urandom(32), os.urandom(32)) for _ in range(n - 1)] + [(salt, digest)])
            tree_s = time.perf_counter() - began
            receipt = client.checkpoint(client.size(), tree.root)
            bundle = build_bundle(
                reading=envelope,
                salt=salt,
                digest=digest,
                proof=tree.proof(n - 1),
                root=tree.root,
                device={"id": device.id, "alg": device.alg, "public_key": device.public_key_pem},
                anchor={
                    "chain_id": client.chain_id,
                    "contract": client.anchor_address,
                    "index": receipt.index,
                    "tx_hash": receipt.tx_hash,
                    "block_number": receipt.block_number,
                    "status": "included",
                },
            )
            report = verify_bundle(bundle, client.reader.chain_facts(chain_query(bundle)))
            if not report.ok:
                raise ChainError(f"the bundle of batch size {n} does not verify: {report.failed}")
            batches.append(
                {
                    "readings": n,
                    "index": receipt.index,
                    "gas_per_checkpoint": receipt.gas_used,
                    "gas_per_reading": receipt.gas_used / n,
                    "proof_nodes": len(bundle["proof"]),
                    "proof_nodes_max": math.ceil(math.log2(n)) if n > 1 else 0,
                    "bundle_bytes": len(json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode()),
                    "tree_build_s": round(tree_s, 3),
                }
            )
            log(f"{name}: {n} readings anchored as checkpoint {receipt.index} ({receipt.gas_used} gas)")
        return {"chain": name, "chain_id": client.chain_id, "first_checkpoint_gas": warm_up, "batches": batches}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['chain']} (chain id {result['chain_id']})")
    if result["first_checkpoint_gas"] is not None:
        print(f"  checkpoint 0 (no previous checkpoint to read): {result['first_checkpoint_gas']:,} gas")
    print(f"  {'readings/batch':>14}  {'gas/checkpoint':>14}  {'gas/reading':>11}  {'proof':>11}  {'bundle bytes':>12}")
    for b in result["batches"]:
        proof = f"{b['proof_nodes']} of <={b['proof_nodes_max']}"
        print(
            f"  {b['readings']:>14,}  {b['gas_per_checkpoint']:>14,}  {b['gas_per_reading']:>11.3f}"
            f"  {proof:>11}  {b['bundle_bytes']:>12,}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--chain",
        action="append",
        help="embedded, anvil (a managed anvil from node_modules) or an http(s):// JSON-RPC URL; repeat for "
        "several (default: embedded, and anvil when installed)",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated readings per batch (default: %(default)s)",
    )
    parser.add_argument(
        "--relayer-key",
        default=os.environ.get("PLEDGELEDGER_RELAYER_KEY"),
        help="0x private key paying for a JSON-RPC chain [env PLEDGELEDGER_RELAYER_KEY]",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs batch sizes >= 1")
    chains = args.chain or ["embedded", *(["anvil"] if find_anvil() else [])]
    if not args.chain and len(chains) == 1:
        log("anvil not installed (npm install): measuring on the embedded chain only")

    results = []
    for chain in chains:
        spec = "managed" if chain == "anvil" else chain
        key = args.relayer_key if spec.startswith(("http://", "https://")) else None
        try:
            results.append(measure(chain, spec, sizes, relayer_key=key))
        except ChainError as exc:
            print(f"bench_anchor: {chain}: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"gas_budget": GAS_BUDGET, "results": results}, indent=2))
    else:
        for result in results:
            print_table(result)
        print(f"\nbudget: {GAS_BUDGET:,} gas per checkpoint (issue 4)")
    over = [b for r in results for b in r["batches"] if b["gas_per_checkpoint"] > GAS_BUDGET]
    if over:
        print(f"bench_anchor: {len(over)} checkpoint(s) over {GAS_BUDGET:,} gas", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
