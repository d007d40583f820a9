// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IDeviceRegistry} from "./interfaces/IDeviceRegistry.sol";

/**
 * @title DeviceRegistry
 * @dev On-chain record of device keys and their validity (SPEC §2).
 *
 * The registrar (the ledger service, after checking the device's proof of possession off
 * chain) records fingerprints; it cannot rewrite history: a key's validity can only be
 * shortened by a rotation or revocation at a time inside it, never extended or removed.
 * A rotation takes effect from now on: it may not start more than {ROTATION_SLACK} before the
 * block's time, so readings already signed with the old key keep verifying. (A revocation may
 * be backdated: a key found to be compromised should not vouch for what it signed since.)
 *
 * NOTE: `type(uint64).max` as `validUntil` means "until rotated or revoked".
 */
contract DeviceRegistry is IDeviceRegistry, AccessControl {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    uint64 public constant OPEN = type(uint64).max;
    /// @dev How far before the block's time a rotation may start (clocks and inclusion delay).
    uint64 public constant ROTATION_SLACK = 1 hours;

    mapping(bytes32 idHash => Key[]) private _keys;
    mapping(bytes32 idHash => bool) private _revoked;

    constructor(address admin, address registrar) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, registrar);
    }

    /// @inheritdoc IDeviceRegistry
    function register(string calldata id, bytes32 fingerprint, Alg alg, uint64 validFrom, uint64 validUntil)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        bytes32 idHash = _requireValidId(id);
        if (_keys[idHash].length != 0) revert DeviceRegistryAlreadyRegistered(id);
        _requireValidKey(fingerprint, alg, validFrom, validUntil);
        _keys[idHash].push(Key(fingerprint, alg, validFrom, validUntil));
        emit DeviceRegistered(id, fingerprint, alg, validFrom, validUntil);
    }

    /// @inheritdoc IDeviceRegistry
    function rotate(string calldata id, bytes32 fingerprint, Alg alg, uint64 at, uint64 validUntil)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        (bytes32 idHash, Key storage current) = _currentKey(id);
        _requireInside(id, current, at);
        if (uint256(at) + ROTATION_SLACK < block.timestamp) revert DeviceRegistryInvalidTime(id, at);
        _requireValidKey(fingerprint, alg, at, validUntil);
        bytes32 old = current.fingerprint;
        current.validUntil = at;
        _keys[idHash].push(Key(fingerprint, alg, at, validUntil));
        emit DeviceKeyRotated(id, old, fingerprint, at);
    }

    /// @inheritdoc IDeviceRegistry
    function revoke(string calldata id, uint64 at) external onlyRole(REGISTRAR_ROLE) {
        (bytes32 idHash, Key storage current) = _currentKey(id);
        _requireInside(id, current, at);
        current.validUntil = at;
        _revoked[idHash] = true;
        emit DeviceRevoked(id, current.fingerprint, at);
    }

    /// @inheritdoc IDeviceRegistry
    function keysOf(string calldata id) external view returns (Key[] memory) {
        return _keys[keccak256(bytes(id))];
    }

    /// @inheritdoc IDeviceRegistry
    function keyAt(string calldata id, uint64 timestamp) external view returns (Key memory key) {
        Key[] storage keys = _keys[keccak256(bytes(id))];
        for (uint256 i = keys.length; i > 0; --i) {
            Key storage k = keys[i - 1];
            if (k.validFrom <= timestamp && timestamp < k.validUntil) return k;
        }
    }

    /// @inheritdoc IDeviceRegistry
    function isRevoked(string calldata id) external view returns (bool) {
        return _revoked[keccak256(bytes(id))];
    }

    function _currentKey(string calldata id) private view returns (bytes32 idHash, Key storage current) {
        idHash = keccak256(bytes(id));
        Key[] storage keys = _keys[idHash];
        if (keys.length == 0) revert DeviceRegistryUnknownDevice(id);
        if (_revoked[idHash]) revert DeviceRegistryRevoked(id);
        current = keys[keys.length - 1];
    }

    function _requireInside(string calldata id, Key storage current, uint64 at) private view {
        if (at <= current.validFrom || at >= current.validUntil) revert DeviceRegistryInvalidTime(id, at);
    }

    function _requireValidKey(bytes32 fingerprint, Alg alg, uint64 validFrom, uint64 validUntil) private pure {
        if (fingerprint == bytes32(0) || alg == Alg.None || validFrom >= validUntil) {
            revert DeviceRegistryInvalidKey(fingerprint, validFrom, validUntil);
        }
    }

    function _requireValidId(string calldata id) private pure returns (bytes32) {
        bytes calldata b = bytes(id);
        if (b.length == 0 || b.length > 64) revert DeviceRegistryInvalidId(id);
        for (uint256 i = 0; i < b.length; ++i) {
            bytes1 c = b[i];
            bool ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "."
                || c == "_" || c == ":" || c == "-";
            if (!ok) revert DeviceRegistryInvalidId(id);
        }
        return keccak256(b);
    }
}
