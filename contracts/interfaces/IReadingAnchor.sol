// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/**
 * @dev Interface of {ReadingAnchor}: an append-only chain of Merkle-root checkpoints.
 *
 * Checkpoint `i` commits to the root of batch `i`, the number of readings in it and the
 * previous head:
 *
 *     head(0)   = bytes32(0)
 *     head(i+1) = keccak256(abi.encode(head(i), i, root(i), count(i)))
 *
 * A writer must name the head it extends, so a checkpoint built on a stale or forked view
 * of the chain is refused, and a stored root can never be replaced.
 */
interface IReadingAnchor {
    /// @dev The writer named `claimedHead` as the head it extends, but the current head is `currentHead`.
    error ReadingAnchorStaleHead(bytes32 currentHead, bytes32 claimedHead);
    /// @dev A checkpoint must carry a non-zero root and at least one reading.
    error ReadingAnchorEmptyCheckpoint();
    /// @dev No checkpoint has been anchored at `index` yet.
    error ReadingAnchorUnknownIndex(uint256 index, uint256 size);

    /// @dev Emitted right after checkpoint `index` is stored.
    event Checkpointed(uint256 indexed index, bytes32 indexed root, uint64 count, bytes32 prevHead, bytes32 head);

    /// @dev Appends checkpoint number `size()` on top of `prevHead`; returns its index.
    function checkpoint(bytes32 prevHead, bytes32 root, uint64 count) external returns (uint256 index);

    /// @dev The Merkle root of checkpoint `index`; reverts with {ReadingAnchorUnknownIndex} if none.
    function rootOf(uint256 index) external view returns (bytes32);

    /// @dev The registry holding the keys of the devices whose readings are anchored here.
    function deviceRegistry() external view returns (IDeviceRegistry);

    /// @dev The number of checkpoints and the current head.
    function head() external view returns (uint256 size, bytes32 headHash);

    /**
     * @dev True when `(salt, digest)` is a reading in checkpoint `index` under the
     * OpenZeppelin StandardMerkleTree encoding `["bytes32", "bytes32"]`.
     */
    function verifyReading(uint256 index, bytes32 salt, bytes32 digest, bytes32[] calldata proof)
        external
        view
        returns (bool);
}
