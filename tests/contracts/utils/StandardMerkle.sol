// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @dev Test-side re-implementation of OpenZeppelin's StandardMerkleTree for leaf encoding
 * `["bytes32", "bytes32"]` (SPEC §3), written independently of the contract under test.
 *
 * Layout of OZ's tree for n sorted leaves L0 <= L1 <= ...: for 2 leaves root = H(L0, L1); for 3
 * leaves root = H(H(L0, L1), L2) where L2 is the greatest leaf hash.
 */
library StandardMerkle {
    /// @dev keccak256(bytes.concat(keccak256(abi.encode(salt, digest))))
    function leaf(bytes32 salt, bytes32 digest) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(salt, digest))));
    }

    /// @dev Inner node: keccak256 of the sorted pair.
    function node(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
    }

    function sort3(bytes32 a, bytes32 b, bytes32 c) internal pure returns (bytes32, bytes32, bytes32) {
        if (a > b) (a, b) = (b, a);
        if (b > c) (b, c) = (c, b);
        if (a > b) (a, b) = (b, a);
        return (a, b, c);
    }

    function one(bytes32 x) internal pure returns (bytes32[] memory p) {
        p = new bytes32[](1);
        p[0] = x;
    }

    function two(bytes32 x, bytes32 y) internal pure returns (bytes32[] memory p) {
        p = new bytes32[](2);
        p[0] = x;
        p[1] = y;
    }
}
