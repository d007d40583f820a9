// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/**
 * @dev Interface of {ReadingAnchor}: an append-only chain of Merkle-root checkpoints.
 *
 * Checkpoint `i` holds the root of batch `i`. The chain is the roots in index order:
 *
 *     head = (size, rootOf(size - 1))        (size 0: (0, bytes32(0)))
 *
 * The link: checkpoint `i` is accepted only while checkpoint `i - 1` exists and `i` does
 * not, that is only as the next checkpoint on top of the current head, and a stored root
 * can never be replaced or removed. So checkpoint `i` commits to every checkpoint before it
 * exactly as they are on chain: no batch can be left out, inserted or changed afterwards.
 * A writer that names any other index (a stale or a forked view of the chain) is refused.
 *
 * Gas: a checkpoint costs 47,812 gas (receipt gas for index >= 1, the same on anvil and
 * py-evm; index 0 skips the link read and costs 45,539): 21,000 for the transaction,
 * about 720 for the calldata, 22,100 for the one new storage slot (the root, in a cold
 * slot), 2,100 for the one cold read that checks the link (`rootOf(index - 1)`), 1,125 for
 * the event and about 770 of execution. The tests keep it at or below 48,000. Nothing more
 * fits, which is why:
 *
 * - there is no head or size slot (updating one costs 2,900 plus 2,100 for the cold slot);
 *   {head} and {size} are found by a search over the roots, free in an `eth_call`;
 * - the writer is an immutable, not a role: a role lookup is another cold storage read
 *   (2,100). Rotating the relayer key therefore means deploying a new anchor;
 * - the writer names the head it extends by its index only: also passing the previous root
 *   costs about 600 more (32 calldata bytes and the comparison: 48,424 measured);
 *   the link is checked against the chain itself instead;
 * - no reading count goes on chain (about 400 in calldata and event): the root commits to
 *   the whole batch (a checkpoint that also passes the previous root and the count and logs
 *   them with the root measured 49,541);
 * - the event carries only the index, which locates the transaction: the root is in storage
 *   ({rootOf}) and in the calldata, and 32 more bytes of event data (256 gas) would take a
 *   checkpoint to 48,110.
 */
interface IReadingAnchor {
    /// @dev `account` is not the anchor's writer.
    error ReadingAnchorUnauthorizedWriter(address account);
    /// @dev The writer must be a real account.
    error ReadingAnchorInvalidWriter(address writer);
    /// @dev A checkpoint must carry a non-zero root.
    error ReadingAnchorEmptyRoot();
    /// @dev Checkpoint `index` already holds `root`: the writer's view of the head is stale.
    error ReadingAnchorAlreadyAnchored(uint256 index, bytes32 root);
    /// @dev Checkpoint `index - 1` does not exist, so `index` would leave a gap.
    error ReadingAnchorMissingPrevious(uint256 index);
    /// @dev No checkpoint has been anchored at `index` yet.
    error ReadingAnchorUnknownIndex(uint256 index);

    /// @dev Emitted right after a root is stored as checkpoint `index` (read it with {rootOf}).
    event Checkpointed(uint256 indexed index);

    /**
     * @dev Stores `root` as checkpoint `index`, which must be {size}: reverts with
     * {ReadingAnchorAlreadyAnchored} if `index` is taken, {ReadingAnchorMissingPrevious} if
     * `index - 1` is not, {ReadingAnchorEmptyRoot} for a zero root and
     * {ReadingAnchorUnauthorizedWriter} for anyone but {writer}.
     */
    function checkpoint(uint256 index, bytes32 root) external;

    /// @dev The Merkle root of checkpoint `index`; reverts with {ReadingAnchorUnknownIndex} if none.
    function rootOf(uint256 index) external view returns (bytes32);

    /**
     * @dev The number of checkpoints.
     *
     * WARNING: found by a search over the roots, O(log size) storage reads (about 50 cold
     * reads at ten million checkpoints): free in an `eth_call`, costly from another contract,
     * which should track the index it needs instead.
     */
    function size() external view returns (uint256);

    /// @dev The number of checkpoints and the root of the last one (zero for an empty chain); see {size}.
    function head() external view returns (uint256 size, bytes32 root);

    /// @dev The only account that can append checkpoints, fixed at deployment.
    function writer() external view returns (address);

    /// @dev The registry holding the keys of the devices whose readings are anchored here.
    function deviceRegistry() external view returns (IDeviceRegistry);

    /**
     * @dev True when `(salt, digest)` is a reading in checkpoint `index` under the
     * OpenZeppelin StandardMerkleTree encoding `["bytes32", "bytes32"]`; reverts with
     * {ReadingAnchorUnknownIndex} if there is no checkpoint `index`.
     */
    function verifyReading(uint256 index, bytes32 salt, bytes32 digest, bytes32[] calldata proof)
        external
        view
        returns (bool);
}
