// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReadingAnchor} from "../../contracts/ReadingAnchor.sol";
import {IDeviceRegistry} from "../../contracts/interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../../contracts/interfaces/IReadingAnchor.sol";
import {ReadingAnchorHandler} from "./handlers/ReadingAnchorHandler.sol";
import {Assertions} from "./utils/Assertions.sol";

/// @dev Mirrors forge-std's `StdInvariant.FuzzSelector`, read by the invariant fuzzer.
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/**
 * @dev Invariants of {ReadingAnchor} under random sequences of valid, stale, gapped, empty and
 * unauthorised checkpoints issued through {ReadingAnchorHandler}.
 *
 * hardhat-config lines keep the campaign short (the default is 256 runs x 500 calls).
 */
contract ReadingAnchorInvariantTest is Assertions {
    ReadingAnchorHandler internal handler;
    ReadingAnchor internal anchor;

    function setUp() public {
        handler = new ReadingAnchorHandler();
        anchor = handler.anchor();
    }

    /// @dev Only the handler is fuzzed (the anchor itself is reached through it).
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /**
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 40
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_headIsTheLastAcceptedRoot() public view {
        (uint256 size, bytes32 root) = anchor.head();
        uint256 n = handler.ghostSize();
        vm.assertEq(size, n, "size == number of accepted checkpoints");
        vm.assertEq(anchor.size(), n, "size() == number of accepted checkpoints");
        vm.assertEq(root, n == 0 ? bytes32(0) : handler.ghostRoots(n - 1), "head root == last accepted root");
    }

    /**
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 40
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_storedRootsNeverChange() public view {
        uint256 n = handler.ghostSize();
        for (uint256 i = 0; i < n; ++i) {
            vm.assertEq(anchor.rootOf(i), handler.ghostRoots(i), "rootOf(i) == root appended at i");
        }
        try anchor.rootOf(n) returns (bytes32) {
            vm.assertTrue(false, "rootOf(size) returned");
        } catch (bytes memory reason) {
            vm.assertEq(
                reason,
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, n),
                "rootOf(size) reason"
            );
        }
    }
}

/**
 * @dev The anchor fuzzed directly: random senders call `checkpoint` with random arguments. Only this
 * test contract is the writer, and it is excluded from the senders, so every call must revert and the
 * chain must stay empty.
 */
contract ReadingAnchorUnauthorizedInvariantTest is Assertions {
    ReadingAnchor internal anchor;

    function setUp() public {
        anchor = new ReadingAnchor(address(this), IDeviceRegistry(address(0xDEC1CE)));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(anchor);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory fns = new bytes4[](1);
        fns[0] = ReadingAnchor.checkpoint.selector;
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(anchor), fns);
    }

    function excludeSenders() public view returns (address[] memory senders) {
        senders = new address[](1);
        senders[0] = address(this);
    }

    /**
     * hardhat-config: invariant.runs = 32
     * hardhat-config: invariant.depth = 32
     * hardhat-config: invariant.failOnRevert = false
     */
    function invariant_unauthorizedCallersNeverWrite() public view {
        (uint256 size, bytes32 root) = anchor.head();
        vm.assertEq(size, 0, "size");
        vm.assertEq(root, bytes32(0), "head root");
    }
}
