// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {VM, Vm} from "./Vm.sol";

/**
 * @dev Minimal stand-in for forge-std's `Test`: the cheatcode handle, input bounding for fuzz
 * tests and a few domain-specific assertions. Plain assertions use the `vm.assert*` cheatcodes.
 */
abstract contract Assertions {
    Vm internal constant vm = VM;

    /// @dev Maps `x` into `[min, max]` (inclusive) without discarding the fuzz run.
    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "_bound: min > max");
        uint256 span = max - min;
        if (span == type(uint256).max) return x;
        return min + (x % (span + 1));
    }

    function _bound64(uint256 x, uint64 min, uint64 max) internal pure returns (uint64) {
        return uint64(_bound(x, min, max));
    }

    function _assertKeyEq(IDeviceRegistry.Key memory actual, IDeviceRegistry.Key memory expected, string memory what)
        internal
        pure
    {
        vm.assertEq(actual.fingerprint, expected.fingerprint, string.concat(what, ": fingerprint"));
        vm.assertEq(uint256(actual.alg), uint256(expected.alg), string.concat(what, ": alg"));
        vm.assertEq(uint256(actual.validFrom), uint256(expected.validFrom), string.concat(what, ": validFrom"));
        vm.assertEq(uint256(actual.validUntil), uint256(expected.validUntil), string.concat(what, ": validUntil"));
    }

    function _assertZeroKey(IDeviceRegistry.Key memory actual, string memory what) internal pure {
        _assertKeyEq(actual, IDeviceRegistry.Key(bytes32(0), IDeviceRegistry.Alg.None, 0, 0), what);
    }
}
