// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IDeviceRegistry} from "./interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "./interfaces/IReadingAnchor.sol";

/**
 * @title ReadingAnchor
 * @dev Anchors the Merkle roots of batches of signed device readings (SPEC §3).
 *
 * Leaves follow OpenZeppelin's StandardMerkleTree with leaf encoding `["bytes32","bytes32"]`
 * and values `[salt, digest]`: `leaf = keccak256(bytes.concat(keccak256(abi.encode(salt, digest))))`.
 * The double hash makes a leaf 32 bytes that no inner node (keccak of 64 bytes) can equal,
 * so an inner node can never be passed off as a reading.
 *
 * Storage is one slot per checkpoint, the root at its index, and nothing else: the head is
 * derived from the roots (see {IReadingAnchor} for the link and the gas budget behind it).
 *
 * IMPORTANT: only {writer}, fixed at deployment, can append. Roots are never overwritten or
 * deleted, and checkpoint `i` can only be written while checkpoint `i - 1` exists and `i`
 * does not: the chain of roots only grows, one checkpoint at a time, with no gap.
 *
 * NOTE: {deviceRegistry} is fixed at deployment, so a proof bundle that names this contract
 * also names, through the chain alone, the registry its device key must be found in.
 */
contract ReadingAnchor is IReadingAnchor {
    IDeviceRegistry private immutable _deviceRegistry;
    address private immutable _writer;

    mapping(uint256 index => bytes32 root) private _roots;

    /// @dev Reverts with {ReadingAnchorInvalidWriter} for the zero address (nobody could ever write).
    constructor(address writer_, IDeviceRegistry registry) {
        if (writer_ == address(0)) revert ReadingAnchorInvalidWriter(writer_);
        _writer = writer_;
        _deviceRegistry = registry;
    }

    /// @dev Reverts with {ReadingAnchorUnauthorizedWriter} unless the caller is {writer}.
    modifier onlyWriter() {
        _checkWriter();
        _;
    }

    /// @inheritdoc IReadingAnchor
    function writer() public view virtual returns (address) {
        return _writer;
    }

    /// @inheritdoc IReadingAnchor
    function deviceRegistry() public view virtual returns (IDeviceRegistry) {
        return _deviceRegistry;
    }

    /// @inheritdoc IReadingAnchor
    function checkpoint(uint256 index, bytes32 root) external virtual onlyWriter {
        _checkpoint(index, root);
    }

    /// @inheritdoc IReadingAnchor
    function rootOf(uint256 index) public view virtual returns (bytes32 root) {
        root = _roots[index];
        if (root == bytes32(0)) revert ReadingAnchorUnknownIndex(index);
    }

    /// @inheritdoc IReadingAnchor
    function size() public view virtual returns (uint256) {
        // Roots fill 0 .. size-1 with no gap, so size is the first empty index. Gallop (probe
        // 0, 1, 3, 7, ...) to an empty index, then bisect between the last full probe and it.
        uint256 low = 0; // every index below `low` holds a root
        uint256 high = 0; // `_roots[high]` is empty once the gallop stops
        while (_roots[high] != bytes32(0)) {
            low = high + 1;
            high = 2 * high + 1;
        }
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (_roots[mid] != bytes32(0)) low = mid + 1;
            else high = mid;
        }
        return low;
    }

    /// @inheritdoc IReadingAnchor
    function head() public view virtual returns (uint256 size_, bytes32 root) {
        size_ = size();
        root = size_ == 0 ? bytes32(0) : _roots[size_ - 1];
    }

    /// @inheritdoc IReadingAnchor
    function verifyReading(uint256 index, bytes32 salt, bytes32 digest, bytes32[] calldata proof)
        public
        view
        virtual
        returns (bool)
    {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(salt, digest))));
        return MerkleProof.verifyCalldata(proof, rootOf(index), leaf);
    }

    /**
     * @dev Appends `root` as checkpoint `index`, which must be the current {size}. Every write
     * goes through here.
     *
     * Gas: `_roots[index]` is read before it is written, which warms the slot the write pays
     * for anyway, so the write-once check is free; `_roots[index - 1]` is the one cold read
     * (2,100 gas) and proves that `index` extends the head.
     */
    function _checkpoint(uint256 index, bytes32 root) internal virtual {
        if (root == bytes32(0)) revert ReadingAnchorEmptyRoot();
        bytes32 existing = _roots[index];
        if (existing != bytes32(0)) revert ReadingAnchorAlreadyAnchored(index, existing);
        if (index != 0 && _roots[index - 1] == bytes32(0)) revert ReadingAnchorMissingPrevious(index);
        _roots[index] = root;
        emit Checkpointed(index);
    }

    /// @dev Reverts with {ReadingAnchorUnauthorizedWriter} unless the caller is {writer}.
    function _checkWriter() internal view virtual {
        if (msg.sender != _writer) revert ReadingAnchorUnauthorizedWriter(msg.sender);
    }
}
