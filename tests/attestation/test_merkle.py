"""Our StandardMerkleTree against OpenZeppelin's JS library, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attestation.encoding import from_hex32, to_hex
from attestation.merkle import (
    MultiProof,
    StandardTree,
    leaf_hash,
    node_hash,
    process_multiproof,
    process_proof,
    verify_multiproof,
)
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


# --- multiproofs -------------------------------------------------------------------------------


def hexed(vals: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[to_hex(s), to_hex(d)] for s, d in vals]


def oz_form(tree: StandardTree, order: list[int], mp: MultiProof) -> dict:
    """Our multiproof in the JSON shape of OpenZeppelin's StandardMerkleTree.getMultiProof."""
    return {"leaves": hexed([tree.values[i] for i in order]), "proof": [to_hex(p) for p in mp.proof], "proofFlags": mp.proof_flags}


@pytest.mark.parametrize(
    "n,indices",
    [(1, [0]), (2, [1]), (2, [0, 1]), (5, [4, 0]), (7, [1, 2, 3]), (7, list(range(7))), (64, [3, 17, 18, 40, 63]), (257, [0, 128, 256])],
)
def test_multiproof_matches_openzeppelin(n: int, indices: list[int]) -> None:
    vals = values(n)
    tree = StandardTree.of(vals)
    order, mp = tree.multiproof(indices)
    assert sorted(order) == sorted(indices)
    assert mp.leaves == [leaf_hash(*tree.values[i]) for i in order]
    assert process_multiproof(mp.leaves, mp.proof, mp.proof_flags) == tree.root
    ours = oz_form(tree, order, mp)
    ref = run_node(OZ, {"values": hexed(vals), "multiIndices": indices, "multiproofs": [{"root": to_hex(tree.root), "multiproof": ours}]})
    assert ours == ref["multiproof"]  # the same leaves, in the same order, the same proof and flags
    assert ref["multiVerified"] == [True]  # OpenZeppelin verifies ours


def test_openzeppelin_multiproof_verifies_in_python() -> None:
    vals = values(33)
    ref = run_node(OZ, {"values": hexed(vals), "multiIndices": [30, 2, 9, 10]})
    multiproof = ref["multiproof"]
    leaves = [leaf_hash(from_hex32(s), from_hex32(d)) for s, d in multiproof["leaves"]]
    mp = MultiProof(leaves, [from_hex32(p) for p in multiproof["proof"]], multiproof["proofFlags"])
    assert verify_multiproof(StandardTree.of(vals).root, mp)


def tampered_multiproofs(tree: StandardTree, order: list[int], mp: MultiProof) -> dict[str, MultiProof]:
    other = (os.urandom(32), os.urandom(32))
    flipped = list(mp.proof_flags)
    flipped[0] = not flipped[0]
    return {
        "proof element changed": MultiProof(mp.leaves, [os.urandom(32)] + mp.proof[1:], mp.proof_flags),
        "flag flipped": MultiProof(mp.leaves, mp.proof, flipped),
        "leaf replaced": MultiProof([leaf_hash(*other)] + mp.leaves[1:], mp.proof, mp.proof_flags),
        "leaves reordered": MultiProof(mp.leaves[::-1], mp.proof, mp.proof_flags),
        "proof element dropped": MultiProof(mp.leaves, mp.proof[:-1], mp.proof_flags),
        "proof element added": MultiProof(mp.leaves, mp.proof + [os.urandom(32)], mp.proof_flags),
        "leaf dropped": MultiProof(mp.leaves[1:], mp.proof, mp.proof_flags),
    }


def test_tampered_multiproofs_are_rejected_here_and_by_openzeppelin() -> None:
    vals = values(20)
    tree = StandardTree.of(vals)
    order, mp = tree.multiproof([2, 5, 11])
    assert verify_multiproof(tree.root, mp)
    cases = tampered_multiproofs(tree, order, mp)
    for name, bad in cases.items():
        assert not verify_multiproof(tree.root, bad), name
    # the same tampering in OpenZeppelin's value form (leaves as [salt, digest])
    good = oz_form(tree, order, mp)
    bad_oz = [
        dict(good, proof=[to_hex(os.urandom(32))] + good["proof"][1:]),
        dict(good, proofFlags=[not good["proofFlags"][0]] + good["proofFlags"][1:]),
        dict(good, leaves=good["leaves"][::-1]),
        dict(good, leaves=[[to_hex(os.urandom(32)), good["leaves"][0][1]]] + good["leaves"][1:]),  # another salt
        dict(good, proof=good["proof"][:-1]),
    ]
    ref = run_node(OZ, {"multiproofs": [{"root": to_hex(tree.root), "multiproof": m} for m in [good, *bad_oz]]})
    assert ref["multiVerified"] == [True] + [False] * len(bad_oz)


def test_inner_node_cannot_pass_as_a_leaf_of_a_multiproof() -> None:
    vals = values(8)
    tree = StandardTree.of(vals)
    inner, sibling = tree.tree[1], tree.tree[2]
    left, right = tree.tree[3], tree.tree[4]
    # at the level of hashes an inner node with its sibling leads to the root...
    assert process_multiproof([inner], [sibling], [False]) == tree.root
    # ...but a reading's leaf is the double hash of (salt, digest): its children never make it
    for salt, digest in [(left, right), (right, left)]:
        forged = MultiProof([leaf_hash(salt, digest)], [sibling], [False])
        assert not verify_multiproof(tree.root, forged)
    forged_oz = {"leaves": [[to_hex(left), to_hex(right)]], "proof": [to_hex(sibling)], "proofFlags": [False]}
    assert run_node(OZ, {"multiproofs": [{"root": to_hex(tree.root), "multiproof": forged_oz}]})["multiVerified"] == [False]


def test_multiproof_edge_cases_follow_openzeppelin() -> None:
    vals = values(4)
    tree = StandardTree.of(vals)
    # no flags: the one leaf is the root (a one-leaf tree), or with no leaves proof[0] is
    assert process_multiproof([tree.root], [], []) == tree.root
    assert process_multiproof([], [tree.root], []) == tree.root  # proves nothing: bundles need readings
    assert tree.multiproof([])[1] == MultiProof([], [tree.root], [])
    with pytest.raises(ValueError, match="flags"):
        process_multiproof([tree.root], [tree.root], [])  # 1 + 1 != 0 + 1
    with pytest.raises(ValueError, match="32 bytes"):
        process_multiproof([b"\x00" * 31], [], [])
    with pytest.raises(ValueError, match="step 0"):
        process_multiproof([tree.tree[3]], [tree.tree[4]], [True])  # a second queue node that does not exist yet
    with pytest.raises(ValueError, match="twice"):
        tree.multiproof([1, 1])
