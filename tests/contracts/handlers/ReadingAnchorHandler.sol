// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReadingAnchor} from "../../../contracts/ReadingAnchor.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../../../contracts/interfaces/IReadingAnchor.sol";
import {Assertions} from "../utils/Assertions.sol";

/**
 * @dev Invariant-test handler for {ReadingAnchor}. It is the anchor's writer; every action checks its
 * own pre/post conditions (run with `invariant.failOnRevert = true`, so a failed check fails the
 * campaign) and keeps a ghost copy of every root for the `invariant_*` functions.
 */
contract ReadingAnchorHandler is Assertions {
    address public constant STRANGER = address(0xCAFE);

    ReadingAnchor public immutable anchor;

    bytes32[] public ghostRoots;

    mapping(bytes32 action => uint256) public calls;

    constructor() {
        anchor = new ReadingAnchor(address(this), IDeviceRegistry(address(0xDEC1CE)));
    }

    function ghostSize() external view returns (uint256) {
        return ghostRoots.length;
    }

    /// @dev A valid checkpoint on top of the current head.
    function checkpoint(bytes32 root) external {
        if (root == bytes32(0)) root = bytes32(uint256(1));
        uint256 index = anchor.size();

        anchor.checkpoint(index, root);

        (uint256 sizeAfter, bytes32 headRoot) = anchor.head();
        vm.assertEq(sizeAfter, index + 1, "checkpoint: size grows by one");
        vm.assertEq(headRoot, root, "checkpoint: head is the new root");
        vm.assertEq(anchor.rootOf(index), root, "checkpoint: root stored");
        ghostRoots.push(root);
        ++calls["checkpoint"];
    }

    /// @dev A checkpoint at a taken index: a writer whose view of the head is stale.
    function checkpointTaken(uint256 which, bytes32 root) external {
        uint256 size = ghostRoots.length;
        if (size == 0) return;
        if (root == bytes32(0)) root = bytes32(uint256(1));
        uint256 index = _bound(which, 0, size - 1);
        _expectRefused(
            index, root, abi.encodeWithSelector(IReadingAnchor.ReadingAnchorAlreadyAnchored.selector, index, ghostRoots[index])
        );
        ++calls["checkpointTaken"];
    }

    /// @dev A checkpoint beyond the head, which would leave a gap.
    function checkpointAhead(uint256 index, bytes32 root) external {
        if (root == bytes32(0)) root = bytes32(uint256(1));
        index = _bound(index, ghostRoots.length + 1, type(uint256).max);
        _expectRefused(index, root, abi.encodeWithSelector(IReadingAnchor.ReadingAnchorMissingPrevious.selector, index));
        ++calls["checkpointAhead"];
    }

    /// @dev A checkpoint with a zero root at the right index.
    function checkpointEmpty() external {
        _expectRefused(
            ghostRoots.length, bytes32(0), abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyRoot.selector)
        );
        ++calls["checkpointEmpty"];
    }

    /// @dev Any other account tries a checkpoint that would otherwise be valid.
    function checkpointUnauthorized(address caller, bytes32 root) external {
        if (caller == address(this)) caller = STRANGER;
        if (root == bytes32(0)) root = bytes32(uint256(1));
        (uint256 sizeBefore, bytes32 headBefore) = anchor.head();
        vm.prank(caller);
        try anchor.checkpoint(sizeBefore, root) {
            vm.assertTrue(false, "checkpointUnauthorized: accepted a non-writer");
        } catch (bytes memory reason) {
            vm.assertEq(
                reason,
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnauthorizedWriter.selector, caller),
                "checkpointUnauthorized: revert reason"
            );
        }
        _assertUnchanged(sizeBefore, headBefore);
        ++calls["checkpointUnauthorized"];
    }

    function _expectRefused(uint256 index, bytes32 root, bytes memory expected) private {
        (uint256 sizeBefore, bytes32 headBefore) = anchor.head();
        try anchor.checkpoint(index, root) {
            vm.assertTrue(false, "accepted a checkpoint that does not extend the head");
        } catch (bytes memory reason) {
            vm.assertEq(reason, expected, "revert reason");
        }
        _assertUnchanged(sizeBefore, headBefore);
    }

    function _assertUnchanged(uint256 sizeBefore, bytes32 headBefore) private view {
        (uint256 sizeAfter, bytes32 headAfter) = anchor.head();
        vm.assertEq(sizeAfter, sizeBefore, "size unchanged after a refused checkpoint");
        vm.assertEq(headAfter, headBefore, "head unchanged after a refused checkpoint");
    }
}
