// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
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
 * IMPORTANT: only accounts with {WRITER_ROLE} can append. Roots are never overwritten or
 * deleted; the head only moves forward, one checkpoint at a time, and each checkpoint
 * commits to the one before it (see {IReadingAnchor}).
 *
 * NOTE: {deviceRegistry} is fixed at deployment, so a proof bundle that names this contract
 * also names, through the chain alone, the registry its device key must be found in.
 */
contract ReadingAnchor is IReadingAnchor, AccessControl {
    bytes32 public constant WRITER_ROLE = keccak256("WRITER_ROLE");

    IDeviceRegistry private immutable _deviceRegistry;

    mapping(uint256 index => bytes32 root) private _roots;
    bytes32 private _head;
    uint256 private _size;

    constructor(address admin, address writer, IDeviceRegistry registry) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(WRITER_ROLE, writer);
        _deviceRegistry = registry;
    }

    /// @inheritdoc IReadingAnchor
    function deviceRegistry() public view virtual returns (IDeviceRegistry) {
        return _deviceRegistry;
    }

    /// @inheritdoc IReadingAnchor
    function checkpoint(bytes32 prevHead, bytes32 root, uint64 count)
        external
        onlyRole(WRITER_ROLE)
        returns (uint256 index)
    {
        if (root == bytes32(0) || count == 0) revert ReadingAnchorEmptyCheckpoint();
        bytes32 current = _head;
        if (prevHead != current) revert ReadingAnchorStaleHead(current, prevHead);

        index = _size;
        bytes32 next = keccak256(abi.encode(current, index, root, count));
        _roots[index] = root;
        _head = next;
        _size = index + 1;
        emit Checkpointed(index, root, count, current, next);
    }

    /// @inheritdoc IReadingAnchor
    function rootOf(uint256 index) public view virtual returns (bytes32) {
        if (index >= _size) revert ReadingAnchorUnknownIndex(index, _size);
        return _roots[index];
    }

    /// @inheritdoc IReadingAnchor
    function head() public view virtual returns (uint256 size, bytes32 headHash) {
        return (_size, _head);
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
}
