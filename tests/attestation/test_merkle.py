"""Our StandardMerkleTree against OpenZeppelin's JS library, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attestation.encoding import from_hex32, to_hex
from attestation.merkle import StandardTree, leaf_hash, node_hash, process_proof
from tests.conftest import run_node

OZ = Path(__file__).with_name("oz_merkle.mjs")


def values(n: int) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(32), os.urandom(32)) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 257])
def test_tree_matches_openzeppelin(n: int) -> None:
    vals = values(n)
    ours = StandardTree.of(vals)
    ref = run_node(OZ, {"values": [[to_hex(s), to_hex(d)] for s, d in vals], "dump": ours.dump()})
    assert ours.dump() == ref["dump"]
    assert [[to_hex(p) for p in ours.proof(i)] for i in range(n)] == ref["proofs"]
    assert ref["loadedRoot"] == to_hex(ours.root)
    assert all(ref["verified"])


def test_every_proof_leads_to_the_root() -> None:
    vals = values(33)
    tree = StandardTree.of(vals)
    for i, (salt, digest) in enumerate(vals):
        assert process_proof(leaf_hash(salt, digest), tree.proof(i)) == tree.root


def test_inner_node_cannot_pass_as_a_leaf() -> None:
    vals = values(4)
    tree = StandardTree.of(vals)
    # tree[1] is an inner node with children tree[3], tree[4]; present them as (salt, digest)
    left, right = tree.tree[3], tree.tree[4]
    assert node_hash(left, right) == tree.tree[1]
    forged = [tree.tree[2]]  # the sibling of node 1 would complete a proof for node 1
    assert process_proof(tree.tree[1], forged) == tree.root  # the inner node itself proves...
    for salt, digest in [(left, right), (right, left)]:
        assert process_proof(leaf_hash(salt, digest), forged) != tree.root  # ...but never as a reading


def test_salt_hides_digest() -> None:
    digest = os.urandom(32)
    assert leaf_hash(os.urandom(32), digest) != leaf_hash(os.urandom(32), digest)


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError):
        leaf_hash(b"\x00" * 31, b"\x00" * 32)
    with pytest.raises(ValueError):
        StandardTree.of([])
    with pytest.raises(ValueError):
        from_hex32("0x1234")
