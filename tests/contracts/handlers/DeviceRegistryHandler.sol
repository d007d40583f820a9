// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {DeviceRegistry} from "../../../contracts/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../../contracts/interfaces/IDeviceRegistry.sol";
import {Assertions} from "../utils/Assertions.sol";

/**
 * @dev Invariant-test handler for {DeviceRegistry}: the registry's only registrar, acting on a
 * small set of device ids with a mix of valid and invalid registrations, rotations and revocations.
 *
 * Every action compares the outcome (success, or the exact custom error) with an independent model
 * of the registry and fails on a mismatch (run with `invariant.failOnRevert = true`). Before each
 * action the registry's history is snapshotted into {prevKeys}, so the `invariant_*` functions can
 * check that the action only appended to it.
 */
contract DeviceRegistryHandler is Assertions {
    address public constant ADMIN = address(0xA11CE);
    uint64 internal constant OPEN = type(uint64).max;
    uint256 public constant N_IDS = 3;

    DeviceRegistry public immutable registry;
    bytes32 public immutable registrarRole;

    mapping(uint256 i => IDeviceRegistry.Key[]) internal _model;
    mapping(uint256 i => bool) public modelRevoked;
    mapping(uint256 i => IDeviceRegistry.Key[]) internal _prev;

    mapping(bytes32 action => uint256) public calls;

    constructor() {
        registry = new DeviceRegistry(ADMIN, address(this));
        registrarRole = registry.REGISTRAR_ROLE();
    }

    function id(uint256 i) public pure returns (string memory) {
        return ["dev-0", "WH1:probe_1.a", "dev-0-"][i];
    }

    function modelKeys(uint256 i) external view returns (IDeviceRegistry.Key[] memory) {
        return _model[i];
    }

    function prevKeys(uint256 i) external view returns (IDeviceRegistry.Key[] memory) {
        return _prev[i];
    }

    // ---------------------------------------------------------------- actions

    function register(uint256 idSeed, bytes32 fp, uint8 algSeed, uint64 from, uint64 until, bool tidy) external {
        _snapshot();
        uint256 i = idSeed % N_IDS;
        IDeviceRegistry.Alg alg = IDeviceRegistry.Alg(algSeed % 4);
        if (tidy) {
            if (fp == bytes32(0)) fp = keccak256(abi.encode(idSeed));
            if (alg == IDeviceRegistry.Alg.None) alg = IDeviceRegistry.Alg.ES256;
            if (from == OPEN) from = OPEN - 1;
            if (until <= from) until = OPEN;
        }

        bytes memory expected;
        if (_model[i].length != 0) {
            expected = abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryAlreadyRegistered.selector, id(i));
        } else if (!_validKey(fp, alg, from, until)) {
            expected = abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidKey.selector, fp, from, until);
        }

        try registry.register(id(i), fp, alg, from, until) {
            vm.assertEq(expected.length, 0, "register: accepted, model expected a revert");
            _model[i].push(IDeviceRegistry.Key(fp, alg, from, until));
            ++calls["register"];
        } catch (bytes memory reason) {
            vm.assertEq(reason, expected, "register: revert reason");
            ++calls["register (reverted)"];
        }
        _assertMatchesModel(i);
    }

    function rotate(uint256 idSeed, bytes32 fp, uint8 algSeed, uint64 at, uint64 until, uint8 mode) external {
        _snapshot();
        uint256 i = idSeed % N_IDS;
        IDeviceRegistry.Alg alg = IDeviceRegistry.Alg(algSeed % 4);
        at = _pickTime(i, at, mode % 8 < 3 ? mode % 8 : 3);
        if (mode & 8 == 0) {
            // Mostly a well-formed new key; otherwise the raw (often invalid) inputs.
            if (fp == bytes32(0)) fp = keccak256(abi.encode(idSeed, at));
            if (alg == IDeviceRegistry.Alg.None) alg = IDeviceRegistry.Alg.EdDSA;
            if (at < OPEN) until = _bound64(until, at + 1, OPEN);
        }

        bytes memory expected = _expectedChangeError(i, at);
        if (expected.length == 0 && !_validKey(fp, alg, at, until)) {
            expected = abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidKey.selector, fp, at, until);
        }

        try registry.rotate(id(i), fp, alg, at, until) {
            vm.assertEq(expected.length, 0, "rotate: accepted, model expected a revert");
            _model[i][_model[i].length - 1].validUntil = at;
            _model[i].push(IDeviceRegistry.Key(fp, alg, at, until));
            ++calls["rotate"];
        } catch (bytes memory reason) {
            vm.assertEq(reason, expected, "rotate: revert reason");
            ++calls["rotate (reverted)"];
        }
        _assertMatchesModel(i);
    }

    function revoke(uint256 idSeed, uint64 at, uint8 mode) external {
        _snapshot();
        uint256 i = idSeed % N_IDS;
        at = _pickTime(i, at, mode % 4);

        bytes memory expected = _expectedChangeError(i, at);
        try registry.revoke(id(i), at) {
            vm.assertEq(expected.length, 0, "revoke: accepted, model expected a revert");
            _model[i][_model[i].length - 1].validUntil = at;
            modelRevoked[i] = true;
            ++calls["revoke"];
        } catch (bytes memory reason) {
            vm.assertEq(reason, expected, "revoke: revert reason");
            ++calls["revoke (reverted)"];
        }
        _assertMatchesModel(i);
    }

    /// @dev Any other account (the admin included) tries each mutating function.
    function unauthorized(address caller, uint256 idSeed, uint8 which, uint64 at) external {
        _snapshot();
        if (caller == address(this)) caller = ADMIN;
        uint256 i = idSeed % N_IDS;
        at = _insideCurrent(i, at);
        bytes memory data;
        if (which % 3 == 0) {
            data = abi.encodeCall(registry.register, (id(i), keccak256("x"), IDeviceRegistry.Alg.ES256, 0, OPEN));
        } else if (which % 3 == 1) {
            data = abi.encodeCall(registry.rotate, (id(i), keccak256("x"), IDeviceRegistry.Alg.ES256, at, OPEN));
        } else {
            data = abi.encodeCall(registry.revoke, (id(i), at));
        }
        vm.prank(caller);
        (bool ok, bytes memory reason) = address(registry).call(data);
        vm.assertFalse(ok, "unauthorized: call accepted");
        vm.assertEq(
            reason,
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, registrarRole),
            "unauthorized: revert reason"
        );
        _assertMatchesModel(i);
        ++calls["unauthorized"];
    }

    /// @dev keyAt at a random time, or at/around a boundary of one of the device's keys.
    function probeKeyAt(uint256 idSeed, uint64 t, uint8 mode) external {
        _snapshot();
        uint256 i = idSeed % N_IDS;
        IDeviceRegistry.Key[] storage keys = _model[i];
        if (keys.length != 0 && mode % 4 != 0) {
            IDeviceRegistry.Key storage k = keys[(mode >> 2) % keys.length];
            uint64 edge = mode % 2 == 0 ? k.validFrom : k.validUntil;
            t = mode % 4 == 3 && edge > 0 ? edge - 1 : edge;
        }
        IDeviceRegistry.Key memory actual = registry.keyAt(id(i), t);
        IDeviceRegistry.Key memory expected;
        for (uint256 j = 0; j < keys.length; ++j) {
            if (keys[j].validFrom <= t && t < keys[j].validUntil) expected = keys[j];
        }
        _assertKeyEq(actual, expected, "probeKeyAt");
        ++calls["probeKeyAt"];
    }

    // ---------------------------------------------------------------- model

    function _validKey(bytes32 fp, IDeviceRegistry.Alg alg, uint64 from, uint64 until) private pure returns (bool) {
        return fp != bytes32(0) && alg != IDeviceRegistry.Alg.None && from < until;
    }

    /// @dev The error a rotation or revocation of device `i` at `at` must raise, or "" if none.
    function _expectedChangeError(uint256 i, uint64 at) private view returns (bytes memory) {
        IDeviceRegistry.Key[] storage keys = _model[i];
        if (keys.length == 0) {
            return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryUnknownDevice.selector, id(i));
        }
        if (modelRevoked[i]) return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryRevoked.selector, id(i));
        IDeviceRegistry.Key storage current = keys[keys.length - 1];
        if (at <= current.validFrom || at >= current.validUntil) {
            return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidTime.selector, id(i), at);
        }
        return "";
    }

    /**
     * @dev A rotation/revocation time for device `i`: 0 = `at` as fuzzed, 1 = the current key's
     * validFrom, 2 = its validUntil (both refused), 3 = strictly inside it when there is room.
     */
    function _pickTime(uint256 i, uint64 at, uint256 mode) private view returns (uint64) {
        IDeviceRegistry.Key[] storage keys = _model[i];
        if (keys.length == 0 || mode == 0) return at;
        if (mode == 1) return keys[keys.length - 1].validFrom;
        if (mode == 2) return keys[keys.length - 1].validUntil;
        return _insideCurrent(i, at);
    }

    /// @dev Maps `at` strictly inside the current key of device `i` when there is room for it.
    function _insideCurrent(uint256 i, uint64 at) private view returns (uint64) {
        IDeviceRegistry.Key[] storage keys = _model[i];
        if (keys.length == 0) return at;
        IDeviceRegistry.Key storage current = keys[keys.length - 1];
        if (current.validUntil - current.validFrom < 2) return at;
        return _bound64(at, current.validFrom + 1, current.validUntil - 1);
    }

    function _assertMatchesModel(uint256 i) private view {
        IDeviceRegistry.Key[] memory actual = registry.keysOf(id(i));
        IDeviceRegistry.Key[] storage expected = _model[i];
        vm.assertEq(actual.length, expected.length, "model: number of keys");
        for (uint256 j = 0; j < actual.length; ++j) {
            _assertKeyEq(actual[j], expected[j], "model: key");
        }
        vm.assertEq(registry.isRevoked(id(i)), modelRevoked[i], "model: revoked");
    }

    function _snapshot() private {
        for (uint256 i = 0; i < N_IDS; ++i) {
            IDeviceRegistry.Key[] memory keys = registry.keysOf(id(i));
            delete _prev[i];
            for (uint256 j = 0; j < keys.length; ++j) {
                _prev[i].push(keys[j]);
            }
        }
    }
}
