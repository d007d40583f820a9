"""OpenZeppelin StandardMerkleTree, leaf encoding ``["bytes32", "bytes32"]`` (SPEC §3).

Same hashing as OpenZeppelin's ``merkle-tree`` JS library and ``MerkleProof.sol``:

- leaf  = keccak256(keccak256(abi.encode(salt, digest)))   (64 bytes in, double hashed)
- node  = keccak256(min(a, b) ‖ max(a, b))                  (sorted pair)

The double hash means no inner node (a keccak of 64 bytes) can be presented as a leaf.
Leaves are sorted by hash before the tree is built, and the tree is the flat array of
``StandardMerkleTree.dump()`` (root at 0, children of i at 2i+1 and 2i+2, leaves at the end).

Multiproofs (several leaves, one proof) are OpenZeppelin's too: :meth:`StandardTree.multiproof`
builds what ``getMultiProof`` builds, and :func:`process_multiproof` computes what
``MerkleProof.processMultiProof`` computes on chain (``multiProofVerify`` compares it with the root).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

from sha3 import keccak_256  # safe-pysha3: a C extension, ~5x faster per hash than eth_hash's default

from attestation.encoding import to_hex

__all__ = [
    "LEAF_ENCODING",
    "MultiProof",
    "StandardTree",
    "leaf_hash",
    "node_hash",
    "process_multiproof",
    "process_proof",
    "verify_multiproof",
]

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
class MultiProof:
    """Several leaves proven at once, in OpenZeppelin's ``getMultiProof`` form.

    ``leaves`` are leaf hashes in the order the proof consumes them (OpenZeppelin orders them by
    descending tree index); ``proof_flags[i]`` says whether step ``i`` hashes two nodes of the
    queue (``True``) or one node with the next element of ``proof`` (``False``).
    """

    leaves: list[bytes]
    proof: list[bytes]
    proof_flags: list[bool]


def process_multiproof(leaves: Sequence[bytes], proof: Sequence[bytes], proof_flags: Sequence[bool]) -> bytes:
    """The root a multiproof leads to: ``MerkleProof.processMultiProof`` of OpenZeppelin Contracts 5.

    Raises :class:`ValueError` wherever the Solidity function reverts
    (``MerkleProofInvalidMultiproof``: ``len(leaves) + len(proof) != len(proof_flags) + 1``, or
    proof elements left unused; a panic: proof elements run out), and on nodes that are not 32
    bytes. A step that would take a node not computed yet is refused at once: the JS library
    throws there, and Solidity (which reads a zero word) always reverts later, as such a proof
    cannot use up its elements. With no flags the root is the one leaf, or else ``proof[0]``:
    an empty ``leaves`` proves nothing, so callers that mean "these readings" must require some.
    """
    if any(len(node) != 32 for node in (*leaves, *proof)):
        raise ValueError("multiproof leaves and proof elements are 32 bytes")
    if len(leaves) + len(proof) != len(proof_flags) + 1:
        raise ValueError(
            f"invalid multiproof: {len(leaves)} leaves + {len(proof)} proof elements must be {len(proof_flags)} flags + 1"
        )
    queue: deque[bytes] = deque(leaves)  # leaves first, then the hashes computed from them
    remaining = deque(proof)
    node = b""
    for step, flag in enumerate(proof_flags):
        if not queue or (flag and len(queue) < 2) or (not flag and not remaining):
            raise ValueError(f"invalid multiproof: step {step} has no {'node' if flag or not queue else 'proof element'} to hash")
        a = queue.popleft()
        node = node_hash(a, queue.popleft() if flag else remaining.popleft())
        queue.append(node)
    if proof_flags:
        if remaining:
            raise ValueError(f"invalid multiproof: {len(remaining)} proof elements left unused")
        return node
    return leaves[0] if leaves else proof[0]


def verify_multiproof(root: bytes, multiproof: MultiProof) -> bool:
    """``MerkleProof.multiProofVerify``: do these leaves and this proof lead to ``root``?"""
    try:
        return process_multiproof(multiproof.leaves, multiproof.proof, multiproof.proof_flags) == root
    except ValueError:
        return False


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

    def multiproof(self, value_indices: Sequence[int]) -> tuple[list[int], MultiProof]:
        """A multiproof of ``values[i]`` for each ``i`` (OpenZeppelin ``getMultiProof``).

        Returns the value indices in the order of the proof's leaves, and the proof.
        """
        positions = sorted((self.tree_index[i] for i in value_indices), reverse=True)
        if len(set(positions)) != len(positions):
            raise ValueError("cannot prove the same value twice in one multiproof")
        stack = deque(positions)
        proof: list[bytes] = []
        flags: list[bool] = []
        while stack and stack[0] > 0:
            j = stack.popleft()
            sibling = j + 1 if j % 2 else j - 1
            if stack and stack[0] == sibling:
                flags.append(True)
                stack.popleft()
            else:
                flags.append(False)
                proof.append(self.tree[sibling])
            stack.append((j - 1) // 2)
        if not positions:
            proof.append(self.root)
        value_at = {position: i for i, position in enumerate(self.tree_index)}
        order = [value_at[position] for position in positions]
        return order, MultiProof(leaves=[self.tree[p] for p in positions], proof=proof, proof_flags=flags)

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
