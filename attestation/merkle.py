"""OpenZeppelin StandardMerkleTree, leaf encoding ``["bytes32", "bytes32"]`` (SPEC §3).

Same hashing as OpenZeppelin's ``merkle-tree`` JS library and ``MerkleProof.sol``:

- leaf  = keccak256(keccak256(abi.encode(salt, digest)))   (64 bytes in, double hashed)
- node  = keccak256(min(a, b) ‖ max(a, b))                  (sorted pair)

The double hash means no inner node (a keccak of 64 bytes) can be presented as a leaf.
Leaves are sorted by hash before the tree is built, and the tree is the flat array of
``StandardMerkleTree.dump()`` (root at 0, children of i at 2i+1 and 2i+2, leaves at the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sha3 import keccak_256  # safe-pysha3: a C extension, ~5x faster per hash than eth_hash's default

from attestation.encoding import to_hex

__all__ = ["LEAF_ENCODING", "StandardTree", "leaf_hash", "node_hash", "process_proof"]

LEAF_ENCODING = ["bytes32", "bytes32"]


def keccak(data: bytes) -> bytes:
    """Ethereum's keccak256 (not NIST SHA3-256)."""
    return keccak_256(data).digest()


def leaf_hash(salt: bytes, digest: bytes) -> bytes:
    """The leaf of one reading: ``keccak256(bytes.concat(keccak256(abi.encode(salt, digest))))``."""
    if len(salt) != 32 or len(digest) != 32:
        raise ValueError("salt and digest are 32 bytes each")
    return keccak(keccak(salt + digest))  # abi.encode of two bytes32 is their concatenation


def node_hash(a: bytes, b: bytes) -> bytes:
    """Commutative keccak256 of a pair (OpenZeppelin ``Hashes.commutativeKeccak256``)."""
    return keccak(a + b if a < b else b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a single-leaf proof leads to (``MerkleProof.processProof``)."""
    node = leaf
    for sibling in proof:
        if len(sibling) != 32:
            raise ValueError("proof elements are 32 bytes")
        node = node_hash(node, sibling)
    return node


@dataclass(frozen=True)
class StandardTree:
    """A built tree over ``values`` = [(salt, digest), …] in their original order."""

    tree: list[bytes]
    values: list[tuple[bytes, bytes]]
    tree_index: list[int]  # tree_index[i] = position of values[i]'s leaf in ``tree``

    @classmethod
    def of(cls, values: Sequence[tuple[bytes, bytes]]) -> StandardTree:
        if not values:
            raise ValueError("a tree needs at least one value")
        leaves = [leaf_hash(salt, digest) for salt, digest in values]
        order = sorted(range(len(leaves)), key=leaves.__getitem__)
        size = 2 * len(leaves) - 1
        tree: list[bytes] = [b""] * size
        tree_index = [0] * len(leaves)
        for position, value_index in enumerate(order):
            tree[size - 1 - position] = leaves[value_index]
            tree_index[value_index] = size - 1 - position
        for i in range(size - 1 - len(leaves), -1, -1):
            tree[i] = node_hash(tree[2 * i + 1], tree[2 * i + 2])
        return cls(tree=tree, values=list(values), tree_index=tree_index)

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def proof(self, value_index: int) -> list[bytes]:
        """Sibling hashes from the leaf of ``values[value_index]`` up to the root."""
        i = self.tree_index[value_index]
        proof = []
        while i > 0:
            proof.append(self.tree[i + 1 if i % 2 else i - 1])
            i = (i - 1) // 2
        return proof

    def dump(self) -> dict:
        """OpenZeppelin ``StandardMerkleTree.dump()`` JSON, format ``standard-v1``."""
        return {
            "format": "standard-v1",
            "leafEncoding": list(LEAF_ENCODING),
            "tree": [to_hex(node) for node in self.tree],
            "values": [
                {"value": [to_hex(salt), to_hex(digest)], "treeIndex": index}
                for (salt, digest), index in zip(self.values, self.tree_index)
            ],
        }
