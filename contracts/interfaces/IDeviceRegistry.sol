// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @dev Interface of {DeviceRegistry}: which public key a device signed with, and when.
 *
 * A device is named by its SPEC §1 id (1-64 chars of `[A-Za-z0-9._:-]`); its keys are kept
 * as SHA-256 fingerprints of the DER SubjectPublicKeyInfo, each valid over the half-open
 * interval `[validFrom, validUntil)` in Unix seconds. Rotation closes the current key at the
 * rotation time and opens the new one there, so readings stamped before a rotation still
 * verify against the old key. Revocation closes the current key and the device for good.
 */
interface IDeviceRegistry {
    /// @dev Signature algorithms of SPEC §1.
    enum Alg {
        None,
        ES256,
        ES256K,
        EdDSA
    }

    struct Key {
        bytes32 fingerprint;
        Alg alg;
        uint64 validFrom;
        uint64 validUntil;
    }

    /// @dev The device id is empty, longer than 64 bytes or has a byte outside `[A-Za-z0-9._:-]`.
    error DeviceRegistryInvalidId(string id);
    error DeviceRegistryAlreadyRegistered(string id);
    error DeviceRegistryUnknownDevice(string id);
    error DeviceRegistryRevoked(string id);
    /// @dev Zero fingerprint, `Alg.None`, or an empty or backwards validity interval.
    error DeviceRegistryInvalidKey(bytes32 fingerprint, uint64 validFrom, uint64 validUntil);
    /// @dev A rotation or revocation at `at` does not fall inside the current key's validity, or a
    /// rotation would start more than `ROTATION_SLACK` in the past.
    error DeviceRegistryInvalidTime(string id, uint64 at);

    event DeviceRegistered(string id, bytes32 indexed fingerprint, Alg alg, uint64 validFrom, uint64 validUntil);
    event DeviceKeyRotated(string id, bytes32 indexed oldFingerprint, bytes32 indexed newFingerprint, uint64 at);
    event DeviceRevoked(string id, bytes32 indexed fingerprint, uint64 at);

    function register(string calldata id, bytes32 fingerprint, Alg alg, uint64 validFrom, uint64 validUntil)
        external;
    function rotate(string calldata id, bytes32 fingerprint, Alg alg, uint64 at, uint64 validUntil) external;
    function revoke(string calldata id, uint64 at) external;

    /// @dev Every key the device has had, oldest first.
    function keysOf(string calldata id) external view returns (Key[] memory);
    /// @dev The key valid at `timestamp`, or a zero Key when none was.
    function keyAt(string calldata id, uint64 timestamp) external view returns (Key memory);
    function isRevoked(string calldata id) external view returns (bool);
}
