"""Our multiproofs against OpenZeppelin's on-chain ``MerkleProof.processMultiProof`` / ``multiProofVerify``
(the code a contract runs), compiled with the pinned solc-js and run on py-evm."""

from __future__ import annotations

import json
import os

import pytest
import solcx
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import Web3Exception

from attestation.merkle import MultiProof, StandardTree, leaf_hash, process_multiproof
from tests.attestation.test_merkle import tampered_multiproofs, values
from tests.conftest import ROOT, node_binary

HARNESS = "tests/contracts/harness/MultiProofHarness.sol"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    if node_binary() is None or not (ROOT / "node_modules" / "solc").exists():
        pytest.skip("node_modules not installed")
    settings = json.loads((ROOT / "contracts" / "solc-settings.json").read_text())
    standard_input = {
        "language": "Solidity",
        "sources": {HARNESS: {"content": (ROOT / HARNESS).read_text()}},
        "settings": {**settings, "outputSelection": {HARNESS: {"MultiProofHarness": ["abi", "evm.bytecode.object"]}}},
    }
    out = solcx.compile_standard(standard_input, solc_binary=ROOT / "scripts" / "solc", base_path=str(ROOT), allow_paths=[str(ROOT)])
    compiled = out["contracts"][HARNESS]["MultiProofHarness"]
    w3 = Web3(EthereumTesterProvider())
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["evm"]["bytecode"]["object"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": w3.eth.accounts[0]}))
    return w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])


def on_chain(harness, mp: MultiProof) -> bytes | None:  # type: ignore[no-untyped-def]
    """``processMultiProof`` on chain; ``None`` where it reverts."""
    try:
        return bytes(harness.functions.processMultiProof(mp.proof, mp.proof_flags, mp.leaves).call())
    except (Web3Exception, TransactionFailed):  # a revert (MerkleProofInvalidMultiproof, or a panic)
        return None


def in_python(mp: MultiProof) -> bytes | None:
    try:
        return process_multiproof(mp.leaves, mp.proof, mp.proof_flags)
    except ValueError:
        return None


@pytest.mark.parametrize("n,indices", [(1, [0]), (2, [0, 1]), (6, [5, 0, 3]), (33, list(range(0, 33, 4))), (100, [99])])
def test_valid_multiproofs_verify_on_chain(harness, n: int, indices: list[int]) -> None:  # type: ignore[no-untyped-def]
    tree = StandardTree.of(values(n))
    _, mp = tree.multiproof(indices)
    assert on_chain(harness, mp) == in_python(mp) == tree.root
    assert harness.functions.multiProofVerify(mp.proof, mp.proof_flags, tree.root, mp.leaves).call() is True


def test_tampered_multiproofs_agree_with_the_chain(harness) -> None:  # type: ignore[no-untyped-def]
    tree = StandardTree.of(values(20))
    order, mp = tree.multiproof([2, 5, 11])
    for name, bad in tampered_multiproofs(tree, order, mp).items():
        ours, theirs = in_python(bad), on_chain(harness, bad)
        assert ours != tree.root and theirs != tree.root, name
        if ours is not None:  # where both compute a root, it is the same one
            assert ours == theirs, name


def test_edge_cases_agree_with_the_chain(harness) -> None:  # type: ignore[no-untyped-def]
    tree = StandardTree.of(values(4))
    leaf = leaf_hash(*tree.values[0])
    cases = [
        MultiProof([tree.root], [], []),  # no flags, one leaf: the leaf
        MultiProof([], [tree.root], []),  # no leaves: proof[0] (proves nothing)
        MultiProof([leaf], [tree.root], []),  # 1 + 1 != 0 + 1: MerkleProofInvalidMultiproof
        MultiProof([leaf, leaf], [], [True, True]),  # 2 + 0 != 2 + 1
        MultiProof([leaf], [os.urandom(32), os.urandom(32)], [False]),  # lengths do not match
        # steps that take a node not computed yet: Solidity reads a zero word there, but then its
        # proof elements are not used up and it reverts; we refuse at once
        MultiProof([tree.tree[3]], [tree.tree[4]], [True]),
        MultiProof([leaf], [os.urandom(32), os.urandom(32)], [True, False]),
    ]
    for mp in cases:
        assert in_python(mp) == on_chain(harness, mp), mp
