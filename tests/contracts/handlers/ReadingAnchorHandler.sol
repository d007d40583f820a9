// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ReadingAnchor} from "../../../contracts/ReadingAnchor.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../../../contracts/interfaces/IReadingAnchor.sol";
import {Assertions} from "../utils/Assertions.sol";

/**
 * @dev Invariant-test handler for {ReadingAnchor}. It is the anchor's only writer; every action
 * checks its own pre/post conditions (run with `invariant.failOnRevert = true`, so a failed check
 * fails the campaign) and keeps ghost copies of every checkpoint for the `invariant_*` functions.
 */
contract ReadingAnchorHandler is Assertions {
    address public constant ADMIN = address(0xA11CE);

    ReadingAnchor public immutable anchor;
    bytes32 public immutable writerRole;

    bytes32[] public ghostRoots;
    uint64[] public ghostCounts;
    /// @dev ghostHeads[i] is the head after i checkpoints; ghostHeads[0] == 0.
    bytes32[] public ghostHeads;

    mapping(bytes32 action => uint256) public calls;

    constructor() {
        anchor = new ReadingAnchor(ADMIN, address(this), IDeviceRegistry(address(0xDEC1CE)));
        writerRole = anchor.WRITER_ROLE();
        ghostHeads.push(bytes32(0));
    }

    function ghostSize() external view returns (uint256) {
        return ghostRoots.length;
    }

    function ghostHeadsLength() external view returns (uint256) {
        return ghostHeads.length;
    }

    /// @dev A valid checkpoint on top of the current head.
    function checkpoint(bytes32 root, uint64 count) external {
        if (root == bytes32(0)) root = bytes32(uint256(1));
        if (count == 0) count = 1;
        (uint256 sizeBefore, bytes32 headBefore) = anchor.head();

        uint256 index = anchor.checkpoint(headBefore, root, count);

        (uint256 sizeAfter, bytes32 headAfter) = anchor.head();
        vm.assertEq(index, sizeBefore, "checkpoint: index == old size");
        vm.assertEq(sizeAfter, sizeBefore + 1, "checkpoint: size grows by one");
        vm.assertEq(headAfter, keccak256(abi.encode(headBefore, index, root, count)), "checkpoint: head chain");
        vm.assertEq(anchor.rootOf(index), root, "checkpoint: root stored");

        ghostRoots.push(root);
        ghostCounts.push(count);
        ghostHeads.push(headAfter);
        ++calls["checkpoint"];
    }

    /// @dev A checkpoint on top of an older head of this chain, or of an arbitrary (forked) one.
    function checkpointStale(uint256 which, bytes32 forked, bytes32 root, uint64 count) external {
        if (root == bytes32(0)) root = bytes32(uint256(1));
        if (count == 0) count = 1;
        (uint256 sizeBefore, bytes32 current) = anchor.head();
        bytes32 claimed;
        if (which % 2 == 0 && sizeBefore > 0) {
            claimed = ghostHeads[_bound(which, 0, sizeBefore - 1)];
        } else {
            claimed = forked == current ? ~current : forked;
        }

        try anchor.checkpoint(claimed, root, count) {
            vm.assertTrue(false, "checkpointStale: accepted a stale head");
        } catch (bytes memory reason) {
            vm.assertEq(
                reason,
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, current, claimed),
                "checkpointStale: revert reason"
            );
        }
        _assertUnchanged(sizeBefore, current);
        ++calls["checkpointStale"];
    }

    /// @dev A checkpoint with a zero root or a zero count.
    function checkpointEmpty(bytes32 root, uint64 count, bool zeroRoot) external {
        if (zeroRoot) root = bytes32(0);
        else count = 0;
        (uint256 sizeBefore, bytes32 current) = anchor.head();

        try anchor.checkpoint(current, root, count) {
            vm.assertTrue(false, "checkpointEmpty: accepted an empty checkpoint");
        } catch (bytes memory reason) {
            vm.assertEq(
                reason,
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyCheckpoint.selector),
                "checkpointEmpty: revert reason"
            );
        }
        _assertUnchanged(sizeBefore, current);
        ++calls["checkpointEmpty"];
    }

    /// @dev Any other account, the admin included, tries a checkpoint that would otherwise be valid.
    function checkpointUnauthorized(address caller, bytes32 root, uint64 count) external {
        if (caller == address(this)) caller = ADMIN;
        if (root == bytes32(0)) root = bytes32(uint256(1));
        if (count == 0) count = 1;
        (uint256 sizeBefore, bytes32 current) = anchor.head();

        vm.prank(caller);
        try anchor.checkpoint(current, root, count) {
            vm.assertTrue(false, "checkpointUnauthorized: accepted a non-writer");
        } catch (bytes memory reason) {
            vm.assertEq(
                reason,
                abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, writerRole),
                "checkpointUnauthorized: revert reason"
            );
        }
        _assertUnchanged(sizeBefore, current);
        ++calls["checkpointUnauthorized"];
    }

    function _assertUnchanged(uint256 sizeBefore, bytes32 headBefore) private view {
        (uint256 sizeAfter, bytes32 headAfter) = anchor.head();
        vm.assertEq(sizeAfter, sizeBefore, "size unchanged after a refused checkpoint");
        vm.assertEq(headAfter, headBefore, "head unchanged after a refused checkpoint");
    }
}
