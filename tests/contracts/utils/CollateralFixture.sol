// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CollateralRegistry} from "../../../contracts/CollateralRegistry.sol";
import {ICollateralRegistry} from "../../../contracts/interfaces/ICollateralRegistry.sol";
import {Assertions} from "./Assertions.sol";
import {VM} from "./Vm.sol";
import {CollateralTypedData as TD} from "./CollateralTypedData.sol";

address constant ADMIN = address(0xAD);
address constant REGISTRAR = address(0x4E6);
uint48 constant ADMIN_DELAY = 2 days;
uint256 constant SUPERVISOR_KEY = 0x5E1;

/// @dev A registry as the fixture expects it: {ADMIN} the delayed default admin, {REGISTRAR} the registrar.
function newFixtureRegistry() returns (CollateralRegistry) {
    return new CollateralRegistry(ADMIN_DELAY, ADMIN, REGISTRAR, VM.addr(SUPERVISOR_KEY));
}

/**
 * @dev Shared set-up of the {CollateralRegistry} tests: a registry, one organisation of every role plus a
 * second bank and a second warehouse, each with its own secp256k1 key, and a lot waiting to be registered.
 *
 * Every transition has a builder `_xCall(keys, nonces, deadline)` that signs the action's typed data
 * ({CollateralTypedData}) with `keys`, in order, and returns the calldata; the action's parameters are
 * the fixture's state (`lot`, `rec`, `terms`, `qty`, `ref`, `sub`, ...), so a test sets them, then builds.
 * {_checkApprovals} runs any builder through every way its approvals can be wrong.
 */
abstract contract CollateralFixture is Assertions {
    uint256 internal constant WAREHOUSE_KEY = 0xA11;
    uint256 internal constant ENTERPRISE_KEY = 0xE17;
    uint256 internal constant BANK_KEY = 0xBA1;
    uint256 internal constant OTHER_BANK_KEY = 0xBA2;
    uint256 internal constant OTHER_WAREHOUSE_KEY = 0xA12;
    uint256 internal constant INSURER_KEY = 0x125;
    uint256 internal constant AUDITOR_KEY = 0xA0D;
    uint256 internal constant STRANGER_KEY = 0xBAD;

    uint256 internal constant T0 = 1_750_000_000;

    uint64 internal constant QUANTITY = 10_000;
    uint64 internal constant MINIMUM = 6_000;

    CollateralRegistry internal registry;
    uint24 internal warehouse;
    uint24 internal enterprise;
    uint24 internal bank;
    uint24 internal otherBank;
    uint24 internal otherWarehouse;
    uint24 internal insurer;
    uint24 internal auditor;

    // Parameters of the action being built.
    bytes32 internal lot = keccak256("e-receipt:WH1-2025-0001");
    ICollateralRegistry.LotRecord internal rec;
    ICollateralRegistry.PledgeTerms internal terms;
    ICollateralRegistry.Substitution internal sub;
    bytes32 internal assay = keccak256("assay: Cu 99.99%, SGS report 7731");
    bytes32 internal goods2 = keccak256("goods: 10 t copper cathode + 1 t top-up");
    uint64 internal qty = QUANTITY;
    bytes32 internal ref = keccak256("reason or payment reference");
    /// @dev A margin call's cure deadline (0: a day after the block it is built in).
    uint40 internal cureBy;
    /// @dev Sign for another chain id or contract than the registry's (0: the real ones).
    uint256 internal signChainId;
    address internal signContract;

    /**
     * @dev The fixture's set-up, called by each test's `setUp` (and by the invariant handler's constructor) with
     * a registry from {newFixtureRegistry}: {REGISTRAR} registers the organisations.
     */
    function _deployFixture(CollateralRegistry deployed) internal {
        vm.warp(T0);
        registry = deployed;
        warehouse = _registerOrganisation(ICollateralRegistry.Role.Warehouse, WAREHOUSE_KEY, "Warehouse One");
        enterprise = _registerOrganisation(ICollateralRegistry.Role.Enterprise, ENTERPRISE_KEY, "Copper Trading");
        bank = _registerOrganisation(ICollateralRegistry.Role.Bank, BANK_KEY, "Bank A");
        otherBank = _registerOrganisation(ICollateralRegistry.Role.Bank, OTHER_BANK_KEY, "Bank B");
        otherWarehouse = _registerOrganisation(ICollateralRegistry.Role.Warehouse, OTHER_WAREHOUSE_KEY, "Warehouse Two");
        insurer = _registerOrganisation(ICollateralRegistry.Role.Insurer, INSURER_KEY, "Insurer");
        auditor = _registerOrganisation(ICollateralRegistry.Role.Auditor, AUDITOR_KEY, "Auditor");

        rec.warehouse = warehouse;
        rec.enterprise = enterprise;
        rec.goods = keccak256("goods: 10 t copper cathode, 40 bundles");
        rec.quantity = QUANTITY;
        rec.unit = "kg";
        rec.devices.push(keccak256("wh1:scale-01"));
        rec.devices.push(keccak256("wh1:rfid-02"));
        terms = ICollateralRegistry.PledgeTerms(
            bank, keccak256("PBoC registration 2025-0001"), keccak256("terms: 70% LTV"), QUANTITY, MINIMUM
        );
        sub = ICollateralRegistry.Substitution(
            keccak256("goods: 8 t aluminium ingot"), keccak256("assay: Al 99.7%"), 3_000, 2_000
        );

        vm.label(address(registry), "CollateralRegistry");
        vm.label(vm.addr(WAREHOUSE_KEY), "WAREHOUSE");
        vm.label(vm.addr(ENTERPRISE_KEY), "ENTERPRISE");
        vm.label(vm.addr(BANK_KEY), "BANK");
        vm.label(vm.addr(OTHER_BANK_KEY), "OTHER_BANK");
        vm.label(vm.addr(SUPERVISOR_KEY), "SUPERVISOR");
        vm.label(vm.addr(STRANGER_KEY), "STRANGER");
    }

    // ---------------------------------------------------------------- keys, nonces, signatures

    function _keys(uint256 a) internal pure returns (uint256[] memory k) {
        k = new uint256[](1);
        k[0] = a;
    }

    function _keys(uint256 a, uint256 b) internal pure returns (uint256[] memory k) {
        k = new uint256[](2);
        (k[0], k[1]) = (a, b);
    }

    function _keys(uint256 a, uint256 b, uint256 c) internal pure returns (uint256[] memory k) {
        k = new uint256[](3);
        (k[0], k[1], k[2]) = (a, b, c);
    }

    function _noncesOf(uint256[] memory keys) internal view returns (uint256[] memory n) {
        n = new uint256[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            n[i] = registry.nonces(vm.addr(keys[i]));
        }
    }

    function _deadline() internal view returns (uint256) {
        return block.timestamp + 1 hours;
    }

    function _domain() internal view returns (bytes32) {
        return TD.domainSeparator(
            signChainId == 0 ? block.chainid : signChainId,
            signContract == address(0) ? address(registry) : signContract
        );
    }

    function _sign(uint256 key, bytes32 structHash) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, TD.digest(_domain(), structHash));
        return abi.encodePacked(r, s, v);
    }

    function _sigs(bytes32 structHash, uint256[] memory keys) internal view returns (bytes[] memory sigs) {
        sigs = new bytes[](keys.length);
        for (uint256 i = 0; i < keys.length; ++i) {
            sigs[i] = _sign(keys[i], structHash);
        }
    }

    function _registerOrganisation(ICollateralRegistry.Role role, uint256 key, string memory name)
        internal
        returns (uint24 org)
    {
        address signer = vm.addr(key);
        uint256[] memory n = _noncesOf(_keys(key));
        uint256 deadline = _deadline();
        bytes[] memory sigs = _sigs(TD.registerOrganisation(role, signer, name, n, deadline), _keys(key));
        vm.prank(REGISTRAR);
        org = registry.registerOrganisation(role, signer, name, deadline, n, sigs);
    }

    // ---------------------------------------------------------------- builders (calldata of one transition)

    function _registerLotCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        ICollateralRegistry.LotRecord memory r = rec;
        bytes[] memory sigs = _sigs(TD.registerLot(lot, r, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.registerLot, (lot, r, deadline, n, sigs));
    }

    function _verifyLotCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.verifyLot(lot, assay, qty, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.verifyLot, (lot, assay, qty, deadline, n, sigs));
    }

    function _pledgeCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        ICollateralRegistry.PledgeTerms memory p = terms;
        bytes[] memory sigs = _sigs(TD.pledge(lot, p, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.pledge, (lot, p, deadline, n, sigs));
    }

    function _partialReleaseCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotQuantity(TD.PARTIAL_RELEASE, lot, qty, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.partialRelease, (lot, qty, deadline, n, sigs));
    }

    function _substituteInCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        ICollateralRegistry.Substitution memory s = sub;
        bytes[] memory sigs = _sigs(TD.substitution(TD.SUBSTITUTE_IN, lot, s, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.substituteIn, (lot, s, deadline, n, sigs));
    }

    function _substituteOutCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        ICollateralRegistry.Substitution memory s = sub;
        bytes[] memory sigs = _sigs(TD.substitution(TD.SUBSTITUTE_OUT, lot, s, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.substituteOut, (lot, s, deadline, n, sigs));
    }

    function _marginCallCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        uint40 by = _cureBy();
        bytes[] memory sigs = _sigs(TD.marginCall(lot, ref, by, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.marginCall, (lot, ref, by, deadline, n, sigs));
    }

    function _cureBy() internal view returns (uint40) {
        return cureBy == 0 ? uint40(block.timestamp + 1 days) : cureBy;
    }

    function _cureWithGoodsCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.cureWithGoods(lot, goods2, assay, qty, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.cureWithGoods, (lot, goods2, assay, qty, deadline, n, sigs));
    }

    function _cureWithCashCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotRecord(TD.CURE_WITH_CASH, lot, ref, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.cureWithCash, (lot, ref, deadline, n, sigs));
    }

    function _freezeCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotRecord(TD.FREEZE, lot, ref, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.freeze, (lot, ref, deadline, n, sigs));
    }

    function _unfreezeCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotOnly2(TD.UNFREEZE, lot, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.unfreeze, (lot, deadline, n, sigs));
    }

    function _defaultCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotRecord(TD.DEFAULT, lot, ref, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.declareDefault, (lot, ref, deadline, n, sigs));
    }

    function _defaultUncuredCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotRecord(TD.DEFAULT_UNCURED, lot, ref, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.defaultUncured, (lot, ref, deadline, n, sigs));
    }

    function _enforceCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotOnly2(TD.ENFORCE, lot, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.enforce, (lot, deadline, n, sigs));
    }

    function _releaseCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotQuantity(TD.RELEASE, lot, qty, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.release, (lot, qty, deadline, n, sigs));
    }

    function _closeCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotOnly(TD.CLOSE, lot, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.close, (lot, deadline, n, sigs));
    }

    function _closePledgedCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.lotOnly2(TD.CLOSE_PLEDGED, lot, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.close, (lot, deadline, n, sigs));
    }

    // ---------------------------------------------------------------- running transitions

    /// @dev Calls the registry with `data`; bubbles a revert up.
    function _exec(bytes memory data) internal {
        (bool ok, bytes memory reason) = address(registry).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(reason, 0x20), mload(reason))
            }
        }
    }

    /// @dev `data` reverts with exactly `expected`.
    function _refuse(bytes memory data, bytes memory expected, string memory what) internal {
        (bool ok, bytes memory reason) = address(registry).call(data);
        vm.assertFalse(ok, string.concat(what, ": accepted"));
        vm.assertEq(reason, expected, string.concat(what, ": revert reason"));
    }

    /// @dev Builds with `keys`, their current nonces and a deadline an hour away, and runs it.
    function _run(
        function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
        uint256[] memory keys
    ) internal {
        _exec(build(keys, _noncesOf(keys), _deadline()));
    }

    function _toInbound() internal {
        _run(_registerLotCall, _keys(WAREHOUSE_KEY));
    }

    function _toVerified() internal {
        _toInbound();
        qty = QUANTITY;
        _run(_verifyLotCall, _keys(WAREHOUSE_KEY, ENTERPRISE_KEY));
    }

    function _toPledged() internal {
        _toVerified();
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));
    }

    function _toMarginCall() internal {
        _toPledged();
        _run(_marginCallCall, _keys(BANK_KEY));
    }

    function _toFrozen() internal {
        _toPledged();
        _run(_freezeCall, _keys(SUPERVISOR_KEY));
    }

    function _toDefaulted() internal {
        _toPledged();
        _run(_defaultCall, _keys(BANK_KEY));
    }

    function _toEnforcement() internal {
        _toDefaulted();
        _run(_enforceCall, _keys(BANK_KEY, WAREHOUSE_KEY));
    }

    function _toReleased() internal {
        _toPledged();
        qty = registry.lotOf(lot).quantity;
        _run(_releaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
    }

    // ---------------------------------------------------------------- approvals, exhaustively

    /**
     * @dev Runs `build` (whose valid signers are `keys`, in order) through every way its approvals can be
     * wrong, each refused with its exact error and nothing changed: a signature missing, a nonce and a
     * signature missing, one signature too many, a wrong signer in each position (a stranger, another bank,
     * another warehouse, the lot's other parties), the signers in reverse order, a nonce already used or not
     * yet due, an expired deadline, typed data of another chain id or another contract. Then the valid
     * approvals, with the deadline at this very second, go through and use each signer's nonce once; the
     * same calldata replayed is refused.
     */
    function _checkApprovals(
        function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
        uint256[] memory keys
    ) internal {
        uint256 count = keys.length;
        uint256[] memory n = _noncesOf(keys);
        uint256 deadline = _deadline();
        bytes32 before = _snapshot();

        for (uint256 i = 0; i < count; ++i) {
            _refuse(build(_without(keys, i), n, deadline), _errCount(count, count, count - 1), "signature missing");
            _refuse(
                build(_without(keys, i), _without(n, i), deadline),
                _errCount(count, count - 1, count - 1),
                "approval missing"
            );
            uint256[5] memory wrong = [STRANGER_KEY, OTHER_BANK_KEY, OTHER_WAREHOUSE_KEY, INSURER_KEY, ENTERPRISE_KEY];
            for (uint256 w = 0; w < wrong.length; ++w) {
                _refuseWrongSigner(build, keys, n, deadline, i, wrong[w]);
            }
            for (uint256 j = 0; j < count; ++j) {
                if (j != i) _refuseWrongSigner(build, keys, n, deadline, i, keys[j]);
            }
            if (n[i] > 0) {
                _refuse(
                    build(keys, _replace(n, i, n[i] - 1), deadline),
                    _errNonce(vm.addr(keys[i]), n[i]),
                    "nonce already used"
                );
            }
            _refuse(
                build(keys, _replace(n, i, n[i] + 1), deadline), _errNonce(vm.addr(keys[i]), n[i]), "nonce not yet due"
            );
        }
        _refuse(build(_append(keys, STRANGER_KEY), n, deadline), _errCount(count, count, count + 1), "extra signature");
        if (count > 1) {
            _refuse(build(_reverse(keys), n, deadline), _errApproval(0, vm.addr(keys[0])), "signers reordered");
        }
        _refuse(build(keys, n, block.timestamp - 1), _errExpired(block.timestamp - 1), "deadline passed");

        signChainId = block.chainid + 1;
        _refuse(build(keys, n, deadline), _errApproval(0, vm.addr(keys[0])), "signed for another chain id");
        signChainId = 0;
        signContract = address(0xC0FFEE);
        _refuse(build(keys, n, deadline), _errApproval(0, vm.addr(keys[0])), "signed for another contract");
        signContract = address(0);

        vm.assertEq(_snapshot(), before, "a refused transition changed state");

        bytes memory valid = build(keys, n, block.timestamp);
        _exec(valid);
        for (uint256 i = 0; i < count; ++i) {
            vm.assertEq(registry.nonces(vm.addr(keys[i])), n[i] + 1, "each signer's nonce used once");
        }
        (bool replayed,) = address(registry).call(valid);
        vm.assertFalse(replayed, "replayed transition accepted");
    }

    function _refuseWrongSigner(
        function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
        uint256[] memory keys,
        uint256[] memory n,
        uint256 deadline,
        uint256 i,
        uint256 wrongKey
    ) private {
        if (wrongKey == keys[i]) return;
        _refuse(build(_replace(keys, i, wrongKey), n, deadline), _errApproval(i, vm.addr(keys[i])), "wrong signer");
    }

    /// @dev Everything a transition could change: the lot, its pending substitution, every key's nonce.
    function _snapshot() internal view returns (bytes32) {
        uint256[9] memory keys = [
            WAREHOUSE_KEY,
            ENTERPRISE_KEY,
            BANK_KEY,
            OTHER_BANK_KEY,
            OTHER_WAREHOUSE_KEY,
            INSURER_KEY,
            AUDITOR_KEY,
            SUPERVISOR_KEY,
            STRANGER_KEY
        ];
        bytes memory state = abi.encode(registry.lotOf(lot), registry.pendingSubstitution(lot));
        for (uint256 i = 0; i < keys.length; ++i) {
            state = bytes.concat(state, bytes32(registry.nonces(vm.addr(keys[i]))));
        }
        return keccak256(state);
    }

    // ---------------------------------------------------------------- arrays

    function _without(uint256[] memory a, uint256 i) internal pure returns (uint256[] memory b) {
        b = new uint256[](a.length - 1);
        for (uint256 j = 0; j < b.length; ++j) {
            b[j] = a[j < i ? j : j + 1];
        }
    }

    function _replace(uint256[] memory a, uint256 i, uint256 value) internal pure returns (uint256[] memory b) {
        b = new uint256[](a.length);
        for (uint256 j = 0; j < a.length; ++j) {
            b[j] = j == i ? value : a[j];
        }
    }

    function _append(uint256[] memory a, uint256 value) internal pure returns (uint256[] memory b) {
        b = new uint256[](a.length + 1);
        for (uint256 j = 0; j < a.length; ++j) {
            b[j] = a[j];
        }
        b[a.length] = value;
    }

    function _reverse(uint256[] memory a) internal pure returns (uint256[] memory b) {
        b = new uint256[](a.length);
        for (uint256 j = 0; j < a.length; ++j) {
            b[j] = a[a.length - 1 - j];
        }
    }

    // ---------------------------------------------------------------- expected errors

    function _errCount(uint256 expected, uint256 nonces, uint256 signatures) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(
            ICollateralRegistry.CollateralRegistryApprovalCount.selector, expected, nonces, signatures
        );
    }

    function _errApproval(uint256 index, address signer) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidApproval.selector, index, signer);
    }

    function _errNonce(address account, uint256 current) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidNonce.selector, account, current);
    }

    function _errExpired(uint256 deadline) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryExpiredDeadline.selector, deadline);
    }

    function _errStatus(bytes32 l, ICollateralRegistry.Status status) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidStatus.selector, l, status);
    }

    function _errUnauthorizedSigner(address signer) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnauthorizedSigner.selector, signer);
    }
}
