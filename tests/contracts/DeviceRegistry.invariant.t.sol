// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {DeviceRegistry} from "../../contracts/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../contracts/interfaces/IDeviceRegistry.sol";
import {DeviceRegistryHandler} from "./handlers/DeviceRegistryHandler.sol";
import {Assertions} from "./utils/Assertions.sol";

/**
 * @dev Invariants of {DeviceRegistry} under random sequences of registrations, rotations,
 * revocations, unauthorised calls and `keyAt` probes issued through {DeviceRegistryHandler}.
 */
contract DeviceRegistryInvariantTest is Assertions {
    DeviceRegistryHandler internal handler;
    DeviceRegistry internal registry;

    function setUp() public {
        handler = new DeviceRegistryHandler();
        registry = handler.registry();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /**
     * @dev Compared with the history before the last action: the number of keys never decreases, a
     * key's fingerprint, algorithm and validFrom never change, and its validUntil only decreases.
     *
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 64
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_historyIsAppendOnly() public view {
        for (uint256 i = 0; i < handler.N_IDS(); ++i) {
            IDeviceRegistry.Key[] memory prev = handler.prevKeys(i);
            IDeviceRegistry.Key[] memory keys = registry.keysOf(handler.id(i));
            vm.assertGe(keys.length, prev.length, "number of keys decreased");
            vm.assertLe(keys.length, prev.length + 1, "more than one key appended");
            for (uint256 j = 0; j < prev.length; ++j) {
                vm.assertEq(keys[j].fingerprint, prev[j].fingerprint, "fingerprint changed");
                vm.assertEq(uint256(keys[j].alg), uint256(prev[j].alg), "alg changed");
                vm.assertEq(uint256(keys[j].validFrom), uint256(prev[j].validFrom), "validFrom changed");
                vm.assertLe(keys[j].validUntil, prev[j].validUntil, "validUntil extended");
                if (j + 1 < prev.length) {
                    vm.assertEq(uint256(keys[j].validUntil), uint256(prev[j].validUntil), "closed key changed");
                }
            }
        }
    }

    /**
     * @dev Each device's keys are non-empty, well-formed intervals that tile
     * `[keys[0].validFrom, last.validUntil)` without gaps or overlaps; a revoked device has keys.
     *
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 64
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_keysAreContiguousIntervals() public view {
        for (uint256 i = 0; i < handler.N_IDS(); ++i) {
            string memory id = handler.id(i);
            IDeviceRegistry.Key[] memory keys = registry.keysOf(id);
            if (registry.isRevoked(id)) vm.assertGe(keys.length, 1, "revoked device without keys");
            for (uint256 j = 0; j < keys.length; ++j) {
                vm.assertNotEq(keys[j].fingerprint, bytes32(0), "zero fingerprint");
                vm.assertTrue(keys[j].alg != IDeviceRegistry.Alg.None, "Alg.None");
                vm.assertLt(keys[j].validFrom, keys[j].validUntil, "empty interval");
                if (j > 0) {
                    vm.assertEq(uint256(keys[j].validFrom), uint256(keys[j - 1].validUntil), "gap or overlap");
                }
            }
        }
    }

    /**
     * @dev At every key boundary (and one second before it), keyAt returns the key whose half-open
     * interval holds the timestamp, or the zero key when none does.
     *
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 64
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_keyAtCoversTimestamp() public view {
        for (uint256 i = 0; i < handler.N_IDS(); ++i) {
            string memory id = handler.id(i);
            IDeviceRegistry.Key[] memory keys = registry.keysOf(id);
            for (uint256 j = 0; j < keys.length; ++j) {
                _checkKeyAt(id, keys, keys[j].validFrom);
                _checkKeyAt(id, keys, keys[j].validUntil);
                if (keys[j].validFrom > 0) _checkKeyAt(id, keys, keys[j].validFrom - 1);
                _checkKeyAt(id, keys, keys[j].validUntil - 1);
            }
            _checkKeyAt(id, keys, 0);
            _checkKeyAt(id, keys, type(uint64).max);
        }
    }

    /**
     * hardhat-config: invariant.runs = 48
     * hardhat-config: invariant.depth = 64
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_registryMatchesModel() public view {
        for (uint256 i = 0; i < handler.N_IDS(); ++i) {
            string memory id = handler.id(i);
            IDeviceRegistry.Key[] memory keys = registry.keysOf(id);
            IDeviceRegistry.Key[] memory model = handler.modelKeys(i);
            vm.assertEq(keys.length, model.length, "number of keys");
            for (uint256 j = 0; j < keys.length; ++j) {
                _assertKeyEq(keys[j], model[j], "key");
            }
            vm.assertEq(registry.isRevoked(id), handler.modelRevoked(i), "revoked");
        }
    }

    function _checkKeyAt(string memory id, IDeviceRegistry.Key[] memory keys, uint64 t) private view {
        IDeviceRegistry.Key memory actual = registry.keyAt(id, t);
        IDeviceRegistry.Key memory expected;
        uint256 covering;
        for (uint256 j = 0; j < keys.length; ++j) {
            if (keys[j].validFrom <= t && t < keys[j].validUntil) {
                expected = keys[j];
                ++covering;
            }
        }
        vm.assertLe(covering, 1, "overlapping keys");
        _assertKeyEq(actual, expected, "keyAt");
    }
}
