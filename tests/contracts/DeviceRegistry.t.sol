// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {DeviceRegistry} from "../../contracts/DeviceRegistry.sol";
import {IDeviceRegistry} from "../../contracts/interfaces/IDeviceRegistry.sol";
import {Assertions} from "./utils/Assertions.sol";

/**
 * @dev Unit and fuzz tests of {DeviceRegistry} (SPEC §1-§2): ids, key validity intervals
 * `[validFrom, validUntil)`, rotation and revocation.
 */
contract DeviceRegistryTest is Assertions {
    address internal constant ADMIN = address(0xA11CE);
    address internal constant REGISTRAR = address(0x5E7);
    address internal constant STRANGER = address(0xCAFE);

    string internal constant ID = "wh-01:cold_room.2";
    bytes32 internal constant FP1 = keccak256("fp1");
    bytes32 internal constant FP2 = keccak256("fp2");
    bytes32 internal constant FP3 = keccak256("fp3");
    uint64 internal constant T0 = 1_700_000_000;
    uint64 internal constant T1 = 1_710_000_000;
    uint64 internal constant T2 = 1_720_000_000;
    uint64 internal constant T3 = 1_730_000_000;
    uint64 internal constant OPEN = type(uint64).max;

    IDeviceRegistry.Alg internal constant ES256 = IDeviceRegistry.Alg.ES256;
    IDeviceRegistry.Alg internal constant ES256K = IDeviceRegistry.Alg.ES256K;
    IDeviceRegistry.Alg internal constant EDDSA = IDeviceRegistry.Alg.EdDSA;
    IDeviceRegistry.Alg internal constant NONE = IDeviceRegistry.Alg.None;

    DeviceRegistry internal registry;
    bytes32 internal registrarRole;

    function setUp() public {
        registry = new DeviceRegistry(ADMIN, REGISTRAR);
        registrarRole = registry.REGISTRAR_ROLE();
        vm.label(ADMIN, "ADMIN");
        vm.label(REGISTRAR, "REGISTRAR");
        vm.label(STRANGER, "STRANGER");
    }

    // ---------------------------------------------------------------- helpers

    function _key(bytes32 fp, IDeviceRegistry.Alg alg, uint64 from, uint64 until)
        internal
        pure
        returns (IDeviceRegistry.Key memory)
    {
        return IDeviceRegistry.Key(fp, alg, from, until);
    }

    function _register(string memory id, bytes32 fp, uint64 from, uint64 until) internal {
        vm.prank(REGISTRAR);
        registry.register(id, fp, ES256, from, until);
    }

    function _rotate(string memory id, bytes32 fp, uint64 at, uint64 until) internal {
        vm.prank(REGISTRAR);
        registry.rotate(id, fp, ES256K, at, until);
    }

    function _revoke(string memory id, uint64 at) internal {
        vm.prank(REGISTRAR);
        registry.revoke(id, at);
    }

    function _errInvalidId(string memory id) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidId.selector, id);
    }

    function _errInvalidKey(bytes32 fp, uint64 from, uint64 until) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidKey.selector, fp, from, until);
    }

    function _errInvalidTime(string memory id, uint64 at) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidTime.selector, id, at);
    }

    function _errUnknown(string memory id) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryUnknownDevice.selector, id);
    }

    function _errRevoked(string memory id) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryRevoked.selector, id);
    }

    function _errUnauthorized(address account) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, account, registrarRole);
    }

    /// @dev Reference predicate for SPEC §1 id bytes, written independently of the contract.
    function _isIdByte(bytes1 c) internal pure returns (bool) {
        bytes memory allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
        for (uint256 i = 0; i < allowed.length; ++i) {
            if (allowed[i] == c) return true;
        }
        return false;
    }

    function _repeat(bytes1 c, uint256 n) internal pure returns (string memory) {
        bytes memory b = new bytes(n);
        for (uint256 i = 0; i < n; ++i) {
            b[i] = c;
        }
        return string(b);
    }

    // ---------------------------------------------------------------- constructor

    function test_constructor_grantsRoles() public view {
        vm.assertEq(registrarRole, keccak256("REGISTRAR_ROLE"), "REGISTRAR_ROLE");
        vm.assertEq(uint256(registry.OPEN()), uint256(type(uint64).max), "OPEN");
        vm.assertTrue(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), ADMIN), "admin role");
        vm.assertTrue(registry.hasRole(registrarRole, REGISTRAR), "registrar role");
        vm.assertFalse(registry.hasRole(registrarRole, ADMIN), "admin is not registrar");
        vm.assertFalse(registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), REGISTRAR), "registrar is not admin");
    }

    // ---------------------------------------------------------------- register

    function test_register_storesKeyAndEmits() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceRegistered(ID, FP1, EDDSA, T0, T2);
        vm.prank(REGISTRAR);
        registry.register(ID, FP1, EDDSA, T0, T2);

        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        vm.assertEq(keys.length, 1, "one key");
        _assertKeyEq(keys[0], _key(FP1, EDDSA, T0, T2), "keysOf[0]");
        vm.assertFalse(registry.isRevoked(ID), "not revoked");

        // Half-open interval [T0, T2).
        _assertZeroKey(registry.keyAt(ID, T0 - 1), "keyAt(validFrom - 1)");
        _assertKeyEq(registry.keyAt(ID, T0), keys[0], "keyAt(validFrom)");
        _assertKeyEq(registry.keyAt(ID, T1), keys[0], "keyAt(inside)");
        _assertKeyEq(registry.keyAt(ID, T2 - 1), keys[0], "keyAt(validUntil - 1)");
        _assertZeroKey(registry.keyAt(ID, T2), "keyAt(validUntil)");
        _assertZeroKey(registry.keyAt(ID, 0), "keyAt(0)");
    }

    function test_register_openEndedKey() public {
        _register(ID, FP1, 0, OPEN);
        _assertKeyEq(registry.keyAt(ID, 0), _key(FP1, ES256, 0, OPEN), "keyAt(0)");
        _assertKeyEq(registry.keyAt(ID, OPEN - 1), _key(FP1, ES256, 0, OPEN), "keyAt(OPEN - 1)");
        _assertZeroKey(registry.keyAt(ID, OPEN), "keyAt(OPEN): the interval is half-open");
    }

    function test_register_everyAlgorithm() public {
        vm.startPrank(REGISTRAR);
        registry.register("dev-es256", FP1, ES256, T0, OPEN);
        registry.register("dev-es256k", FP2, ES256K, T0, OPEN);
        registry.register("dev-eddsa", FP3, EDDSA, T0, OPEN);
        vm.stopPrank();
        vm.assertEq(uint256(registry.keyAt("dev-es256", T0).alg), uint256(ES256), "ES256");
        vm.assertEq(uint256(registry.keyAt("dev-es256k", T0).alg), uint256(ES256K), "ES256K");
        vm.assertEq(uint256(registry.keyAt("dev-eddsa", T0).alg), uint256(EDDSA), "EdDSA");
    }

    function test_register_acceptsEveryIdCharacter() public {
        string memory id = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
        vm.assertEq(bytes(id).length, 66, "fixture length");
        // 66 bytes is too long: split in two ids of 33 bytes.
        string memory first = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";
        string memory second = "hijklmnopqrstuvwxyz0123456789._:-";
        _register(first, FP1, T0, OPEN);
        _register(second, FP1, T0, OPEN);
        vm.assertEq(registry.keysOf(first).length, 1, "first");
        vm.assertEq(registry.keysOf(second).length, 1, "second");
        for (uint256 i = 0; i < bytes(id).length; ++i) {
            vm.assertTrue(_isIdByte(bytes(id)[i]), "reference predicate");
        }
    }

    function test_register_idLengthBounds() public {
        _register("a", FP1, T0, OPEN);
        _register(_repeat("b", 64), FP1, T0, OPEN);
        vm.assertEq(registry.keysOf(_repeat("b", 64)).length, 1, "64 bytes");

        vm.expectRevert(_errInvalidId(""));
        _register("", FP1, T0, OPEN);

        string memory tooLong = _repeat("c", 65);
        vm.expectRevert(_errInvalidId(tooLong));
        _register(tooLong, FP1, T0, OPEN);
    }

    function test_register_invalidIdCharactersRevert() public {
        string[16] memory bad = [
            "a b",
            "a/b", // 0x2F, just below '0'
            "a;b", // 0x3B, just above ':'
            "a@b", // 0x40, just below 'A'
            "a[b", // 0x5B, just above 'Z'
            "a^b", // 0x5E, just below '_'
            "a`b", // 0x60, just above '_' and below 'a'
            "a{b", // 0x7B, just above 'z'
            "a,b", // 0x2C, just below '-'
            "a+b",
            "a~b",
            "a\x00b",
            "a\nb",
            "a\x7fb",
            unicode"caf\u00e9", // UTF-8 bytes >= 0x80
            "dev#1"
        ];
        for (uint256 i = 0; i < bad.length; ++i) {
            vm.expectRevert(_errInvalidId(bad[i]));
            _register(bad[i], FP1, T0, OPEN);
        }
    }

    /// @dev Every byte value at an inner position: accepted iff it is in `[A-Za-z0-9._:-]`.
    function test_register_idCharsetExhaustive() public {
        uint256 accepted;
        for (uint256 c = 0; c < 256; ++c) {
            string memory id = string(abi.encodePacked("id", bytes1(uint8(c)), "x"));
            bool allowed = _isIdByte(bytes1(uint8(c)));
            if (!allowed) vm.expectRevert(_errInvalidId(id));
            _register(id, FP1, T0, OPEN);
            if (allowed) ++accepted;
        }
        vm.assertEq(accepted, 66, "26 + 26 + 10 + 4 allowed bytes");
    }

    function test_register_idsAreCaseSensitive() public {
        _register("dev-a", FP1, T0, OPEN);
        _register("DEV-A", FP2, T0, OPEN);
        vm.assertEq(registry.keyAt("dev-a", T0).fingerprint, FP1, "dev-a");
        vm.assertEq(registry.keyAt("DEV-A", T0).fingerprint, FP2, "DEV-A");
    }

    function test_register_twiceReverts() public {
        _register(ID, FP1, T0, OPEN);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryAlreadyRegistered.selector, ID));
        _register(ID, FP2, T1, OPEN);

        // Not even after revocation: a device id is never reused.
        _revoke(ID, T1);
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryAlreadyRegistered.selector, ID));
        _register(ID, FP2, T2, OPEN);
        vm.assertEq(registry.keysOf(ID).length, 1, "still one key");
    }

    function test_register_invalidKeyReverts() public {
        vm.startPrank(REGISTRAR);
        vm.expectRevert(_errInvalidKey(bytes32(0), T0, OPEN));
        registry.register(ID, bytes32(0), ES256, T0, OPEN);

        vm.expectRevert(_errInvalidKey(FP1, T0, OPEN));
        registry.register(ID, FP1, NONE, T0, OPEN);

        vm.expectRevert(_errInvalidKey(FP1, T0, T0));
        registry.register(ID, FP1, ES256, T0, T0);

        vm.expectRevert(_errInvalidKey(FP1, T1, T0));
        registry.register(ID, FP1, ES256, T1, T0);

        vm.expectRevert(_errInvalidKey(FP1, OPEN, OPEN));
        registry.register(ID, FP1, ES256, OPEN, OPEN);
        vm.stopPrank();

        vm.assertEq(registry.keysOf(ID).length, 0, "nothing stored");
    }

    function test_register_outOfRangeAlgReverts() public {
        bytes memory data = abi.encodeWithSelector(
            DeviceRegistry.register.selector, ID, FP1, uint256(type(uint8).max), uint256(T0), uint256(OPEN)
        );
        vm.prank(REGISTRAR);
        (bool ok,) = address(registry).call(data);
        vm.assertFalse(ok, "Alg out of range accepted");
        vm.assertEq(registry.keysOf(ID).length, 0, "nothing stored");
    }

    function test_register_nonRegistrarReverts() public {
        address[3] memory callers = [STRANGER, ADMIN, address(this)];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.expectRevert(_errUnauthorized(callers[i]));
            vm.prank(callers[i]);
            registry.register(ID, FP1, ES256, T0, OPEN);
        }
    }

    // ---------------------------------------------------------------- rotate

    function test_rotate_splitsValidityAndEmits() public {
        _register(ID, FP1, T0, OPEN);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceKeyRotated(ID, FP1, FP2, T1);
        _rotate(ID, FP2, T1, OPEN);

        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        vm.assertEq(keys.length, 2, "two keys");
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, T1), "old key closed at T1");
        _assertKeyEq(keys[1], _key(FP2, ES256K, T1, OPEN), "new key opened at T1");

        _assertZeroKey(registry.keyAt(ID, T0 - 1), "before registration");
        _assertKeyEq(registry.keyAt(ID, T0), keys[0], "keyAt(T0)");
        _assertKeyEq(registry.keyAt(ID, T1 - 1), keys[0], "old key for readings before the rotation");
        _assertKeyEq(registry.keyAt(ID, T1), keys[1], "new key from the rotation on");
        _assertKeyEq(registry.keyAt(ID, OPEN - 1), keys[1], "keyAt(OPEN - 1)");
        _assertZeroKey(registry.keyAt(ID, OPEN), "keyAt(OPEN)");
        vm.assertFalse(registry.isRevoked(ID), "not revoked");
    }

    function test_rotate_twiceKeepsHistoryContiguous() public {
        _register(ID, FP1, T0, OPEN);
        _rotate(ID, FP2, T1, OPEN);
        _rotate(ID, FP3, T2, T3);

        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        vm.assertEq(keys.length, 3, "three keys");
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, T1), "key 0");
        _assertKeyEq(keys[1], _key(FP2, ES256K, T1, T2), "key 1");
        _assertKeyEq(keys[2], _key(FP3, ES256K, T2, T3), "key 2");
        vm.assertEq(registry.keyAt(ID, T1 - 1).fingerprint, FP1, "T1 - 1");
        vm.assertEq(registry.keyAt(ID, T1).fingerprint, FP2, "T1");
        vm.assertEq(registry.keyAt(ID, T2 - 1).fingerprint, FP2, "T2 - 1");
        vm.assertEq(registry.keyAt(ID, T2).fingerprint, FP3, "T2");
        vm.assertEq(registry.keyAt(ID, T3 - 1).fingerprint, FP3, "T3 - 1");
        _assertZeroKey(registry.keyAt(ID, T3), "T3: past the last key");
    }

    function test_rotate_atInnerBoundariesSucceeds() public {
        // The first instant after validFrom and the last instant before validUntil are both inside.
        _register(ID, FP1, T0, T2);
        _rotate(ID, FP2, T0 + 1, OPEN);
        _rotate(ID, FP3, OPEN - 1, OPEN);
        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, T0 + 1), "one-second key");
        _assertKeyEq(keys[1], _key(FP2, ES256K, T0 + 1, OPEN - 1), "key 1");
        _assertKeyEq(keys[2], _key(FP3, ES256K, OPEN - 1, OPEN), "key 2");
    }

    function test_rotate_outsideCurrentKeyReverts() public {
        _register(ID, FP1, T0, T2);
        uint64[5] memory times = [0, T0 - 1, T0, T2, OPEN];
        for (uint256 i = 0; i < times.length; ++i) {
            vm.expectRevert(_errInvalidTime(ID, times[i]));
            _rotate(ID, FP2, times[i], OPEN);
        }

        // After a rotation, a time inside the *old* key is outside the current one.
        _rotate(ID, FP2, T1, OPEN);
        vm.expectRevert(_errInvalidTime(ID, T1 - 1));
        _rotate(ID, FP3, T1 - 1, OPEN);
        vm.expectRevert(_errInvalidTime(ID, T1));
        _rotate(ID, FP3, T1, OPEN);
        vm.assertEq(registry.keysOf(ID).length, 2, "two keys");
    }

    function test_rotate_cannotBeBackdatedBeyondTheSlack() public {
        _register(ID, FP1, T0, OPEN);
        vm.warp(T2);
        uint64 slack = registry.ROTATION_SLACK();
        vm.expectRevert(abi.encodeWithSelector(IDeviceRegistry.DeviceRegistryInvalidTime.selector, ID, T2 - slack - 1));
        _rotate(ID, FP2, T2 - slack - 1, OPEN); // would un-sign readings the old key made since
        _rotate(ID, FP2, T2 - slack, OPEN); // within the slack: accepted
        vm.assertEq(registry.keysOf(ID)[0].validUntil, T2 - slack, "old key ends at the rotation");
    }

    function test_revoke_mayBeBackdated() public {
        _register(ID, FP1, T0, OPEN);
        vm.warp(T2);
        vm.prank(REGISTRAR);
        registry.revoke(ID, T1); // compromise found late: the key vouches for nothing since T1
        vm.assertEq(registry.keysOf(ID)[0].validUntil, T1, "revoked from T1");
    }

    function test_rotate_invalidNewKeyReverts() public {
        _register(ID, FP1, T0, OPEN);
        vm.startPrank(REGISTRAR);
        vm.expectRevert(_errInvalidKey(bytes32(0), T1, OPEN));
        registry.rotate(ID, bytes32(0), ES256, T1, OPEN);
        vm.expectRevert(_errInvalidKey(FP2, T1, OPEN));
        registry.rotate(ID, FP2, NONE, T1, OPEN);
        vm.expectRevert(_errInvalidKey(FP2, T1, T1));
        registry.rotate(ID, FP2, ES256, T1, T1);
        vm.expectRevert(_errInvalidKey(FP2, T1, T0));
        registry.rotate(ID, FP2, ES256, T1, T0);
        vm.stopPrank();
        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        vm.assertEq(keys.length, 1, "one key");
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, OPEN), "old key untouched");
    }

    function test_rotate_unknownDeviceReverts() public {
        vm.expectRevert(_errUnknown(ID));
        _rotate(ID, FP2, T1, OPEN);
        // Unknown includes ids that could never be registered.
        vm.expectRevert(_errUnknown("not a valid id!"));
        _rotate("not a valid id!", FP2, T1, OPEN);
    }

    function test_rotate_afterRevokeReverts() public {
        _register(ID, FP1, T0, OPEN);
        _revoke(ID, T2);
        // Even at a time that is still inside the (shortened) key.
        vm.expectRevert(_errRevoked(ID));
        _rotate(ID, FP2, T1, OPEN);
    }

    function test_rotate_nonRegistrarReverts() public {
        _register(ID, FP1, T0, OPEN);
        vm.expectRevert(_errUnauthorized(STRANGER));
        vm.prank(STRANGER);
        registry.rotate(ID, FP2, ES256, T1, OPEN);
        vm.expectRevert(_errUnauthorized(ADMIN));
        vm.prank(ADMIN);
        registry.rotate(ID, FP2, ES256, T1, OPEN);
    }

    // ---------------------------------------------------------------- revoke

    function test_revoke_closesKeyAndEmits() public {
        _register(ID, FP1, T0, OPEN);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceRevoked(ID, FP1, T2);
        _revoke(ID, T2);

        vm.assertTrue(registry.isRevoked(ID), "revoked");
        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        vm.assertEq(keys.length, 1, "one key");
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, T2), "key closed at T2");
        _assertKeyEq(registry.keyAt(ID, T2 - 1), keys[0], "readings before the revocation still verify");
        _assertZeroKey(registry.keyAt(ID, T2), "keyAt(at)");
        _assertZeroKey(registry.keyAt(ID, OPEN - 1), "keyAt(later)");
    }

    function test_revoke_afterRotateClosesOnlyCurrentKey() public {
        _register(ID, FP1, T0, OPEN);
        _rotate(ID, FP2, T1, OPEN);

        vm.expectEmit(true, true, true, true, address(registry));
        emit IDeviceRegistry.DeviceRevoked(ID, FP2, T2);
        _revoke(ID, T2);

        IDeviceRegistry.Key[] memory keys = registry.keysOf(ID);
        _assertKeyEq(keys[0], _key(FP1, ES256, T0, T1), "old key untouched");
        _assertKeyEq(keys[1], _key(FP2, ES256K, T1, T2), "current key closed");
        vm.assertEq(registry.keyAt(ID, T1 - 1).fingerprint, FP1, "T1 - 1");
        vm.assertEq(registry.keyAt(ID, T2 - 1).fingerprint, FP2, "T2 - 1");
        _assertZeroKey(registry.keyAt(ID, T2), "T2");
    }

    function test_revoke_twiceReverts() public {
        _register(ID, FP1, T0, OPEN);
        _revoke(ID, T2);
        vm.expectRevert(_errRevoked(ID));
        _revoke(ID, T1);
        vm.expectRevert(_errRevoked(ID));
        _revoke(ID, T2 - 1);
        vm.assertEq(uint256(registry.keysOf(ID)[0].validUntil), uint256(T2), "validUntil unchanged");
    }

    function test_revoke_outsideCurrentKeyReverts() public {
        _register(ID, FP1, T0, T2);
        uint64[4] memory times = [T0 - 1, T0, T2, OPEN];
        for (uint256 i = 0; i < times.length; ++i) {
            vm.expectRevert(_errInvalidTime(ID, times[i]));
            _revoke(ID, times[i]);
        }
        // Not into a previous key's interval either.
        _rotate(ID, FP2, T1, OPEN);
        vm.expectRevert(_errInvalidTime(ID, T1 - 1));
        _revoke(ID, T1 - 1);
        vm.assertFalse(registry.isRevoked(ID), "not revoked");
    }

    function test_revoke_unknownDeviceReverts() public {
        vm.expectRevert(_errUnknown(ID));
        _revoke(ID, T1);
        vm.assertFalse(registry.isRevoked(ID), "unknown device is not revoked");
    }

    function test_revoke_nonRegistrarReverts() public {
        _register(ID, FP1, T0, OPEN);
        vm.expectRevert(_errUnauthorized(STRANGER));
        vm.prank(STRANGER);
        registry.revoke(ID, T1);
        vm.expectRevert(_errUnauthorized(ADMIN));
        vm.prank(ADMIN);
        registry.revoke(ID, T1);
    }

    function test_views_unknownDevice() public view {
        vm.assertEq(registry.keysOf(ID).length, 0, "keysOf");
        _assertZeroKey(registry.keyAt(ID, T1), "keyAt");
        vm.assertFalse(registry.isRevoked(ID), "isRevoked");
    }

    function test_registrarRoleIsManagedByAdmin() public {
        vm.prank(ADMIN);
        registry.grantRole(registrarRole, STRANGER);
        vm.prank(STRANGER);
        registry.register(ID, FP1, ES256, T0, OPEN);
        vm.prank(ADMIN);
        registry.revokeRole(registrarRole, STRANGER);
        vm.expectRevert(_errUnauthorized(STRANGER));
        vm.prank(STRANGER);
        registry.revoke(ID, T1);
    }

    // ---------------------------------------------------------------- fuzz

    function testFuzz_register_idCharset(uint8 c, uint8 position) public {
        bytes memory id = bytes("dev-x");
        id[position % id.length] = bytes1(c);
        if (_isIdByte(bytes1(c))) {
            _register(string(id), FP1, T0, OPEN);
            vm.assertEq(registry.keysOf(string(id)).length, 1, "allowed byte refused");
        } else {
            vm.expectRevert(_errInvalidId(string(id)));
            _register(string(id), FP1, T0, OPEN);
        }
    }

    function testFuzz_register_idLength(uint8 len) public {
        len = uint8(_bound(len, 0, 80));
        string memory id = _repeat("z", len);
        if (len >= 1 && len <= 64) {
            _register(id, FP1, T0, OPEN);
            vm.assertEq(registry.keysOf(id).length, 1, "valid length refused");
        } else {
            vm.expectRevert(_errInvalidId(id));
            _register(id, FP1, T0, OPEN);
        }
    }

    function testFuzz_register_keyValidation(bytes32 fp, uint8 algSeed, uint64 from, uint64 until) public {
        IDeviceRegistry.Alg alg = IDeviceRegistry.Alg(algSeed % 4);
        bool valid = fp != bytes32(0) && alg != NONE && from < until;
        if (!valid) vm.expectRevert(_errInvalidKey(fp, from, until));
        vm.prank(REGISTRAR);
        registry.register(ID, fp, alg, from, until);
        vm.assertEq(registry.keysOf(ID).length, valid ? 1 : 0, "stored iff valid");
    }

    function testFuzz_rotate_timeMustBeInsideCurrentKey(uint64 from, uint64 until, uint64 at) public {
        vm.assume(from < until);
        _register(ID, FP1, from, until);
        bool inside = from < at && at < until;
        if (!inside) vm.expectRevert(_errInvalidTime(ID, at));
        _rotate(ID, FP2, at, OPEN);
        vm.assertEq(registry.keysOf(ID).length, inside ? 2 : 1, "rotated iff inside");
    }

    function testFuzz_revoke_timeMustBeInsideCurrentKey(uint64 from, uint64 until, uint64 at) public {
        vm.assume(from < until);
        _register(ID, FP1, from, until);
        bool inside = from < at && at < until;
        if (!inside) vm.expectRevert(_errInvalidTime(ID, at));
        _revoke(ID, at);
        vm.assertEq(registry.isRevoked(ID), inside, "revoked iff inside");
    }

    function testFuzz_nonRegistrarAlwaysReverts(address caller, uint64 at) public {
        vm.assume(caller != REGISTRAR);
        _register(ID, FP1, T0, OPEN);
        at = _bound64(at, T0 + 1, OPEN - 1);

        vm.expectRevert(_errUnauthorized(caller));
        vm.prank(caller);
        registry.register("other", FP1, ES256, T0, OPEN);

        vm.expectRevert(_errUnauthorized(caller));
        vm.prank(caller);
        registry.rotate(ID, FP2, ES256, at, OPEN);

        vm.expectRevert(_errUnauthorized(caller));
        vm.prank(caller);
        registry.revoke(ID, at);
    }

    /**
     * @dev register [from, until) -> rotate at r1 -> optionally rotate at r2 -> optionally revoke at v,
     * then `keyAt(t)` must be exactly the key whose interval holds t, and never a key whose interval
     * excludes t.
     */
    function testFuzz_keyAt_returnsOnlyTheKeyCoveringTimestamp(
        uint64 from,
        uint64 until,
        uint64 r1,
        uint64 until2,
        uint64 r2,
        uint64 v,
        uint8 flags,
        uint64 t
    ) public {
        from = _bound64(from, 0, OPEN - 4);
        until = _bound64(until, from + 2, OPEN);
        r1 = _bound64(r1, from + 1, until - 1);
        until2 = _bound64(until2, r1 + 1, OPEN);
        bool doRotate2 = flags & 1 != 0 && until2 - r1 >= 2;
        bool doRevoke = flags & 2 != 0;

        _register(ID, FP1, from, until);
        _rotate(ID, FP2, r1, until2);
        uint64 end = until2; // end of the current key
        if (doRotate2) {
            r2 = _bound64(r2, r1 + 1, until2 - 1);
            _rotate(ID, FP3, r2, OPEN);
            end = OPEN;
        }
        uint64 currentFrom = doRotate2 ? r2 : r1;
        if (doRevoke && end - currentFrom >= 2) {
            v = _bound64(v, currentFrom + 1, end - 1);
            _revoke(ID, v);
            end = v;
        }

        // Three times out of four, probe just around one of the interval boundaries.
        uint64[5] memory edges = [from, r1, doRotate2 ? r2 : r1, end, until];
        uint256 mode = flags >> 2;
        if (mode % 4 != 0) {
            uint64 edge = edges[(mode >> 2) % edges.length];
            t = mode % 4 == 1 ? edge : (mode % 4 == 2 ? (edge == 0 ? 0 : edge - 1) : (edge == OPEN ? OPEN : edge + 1));
        }

        IDeviceRegistry.Key memory k = registry.keyAt(ID, t);
        if (k.fingerprint != bytes32(0)) {
            vm.assertLe(k.validFrom, t, "keyAt: validFrom > t");
            vm.assertLt(t, k.validUntil, "keyAt: t >= validUntil");
        }

        bytes32 expected;
        if (t >= from && t < r1) expected = FP1;
        else if (doRotate2 && t >= r1 && t < r2) expected = FP2;
        else if (!doRotate2 && t >= r1 && t < end) expected = FP2;
        else if (doRotate2 && t >= r2 && t < end) expected = FP3;
        vm.assertEq(k.fingerprint, expected, "keyAt: wrong key");
        if (expected == bytes32(0)) _assertZeroKey(k, "keyAt: zero key");
    }
}
