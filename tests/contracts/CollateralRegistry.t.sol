// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {CollateralRegistry} from "../../contracts/CollateralRegistry.sol";
import {ICollateralRegistry} from "../../contracts/interfaces/ICollateralRegistry.sol";
import {
    ADMIN,
    ADMIN_DELAY,
    CollateralFixture,
    REGISTRAR,
    SUPERVISOR_KEY,
    newFixtureRegistry
} from "./utils/CollateralFixture.sol";
import {CollateralTypedData as TD} from "./utils/CollateralTypedData.sol";
import {ContractWallet} from "./utils/ContractWallet.sol";

/**
 * @dev Unit and fuzz tests of {CollateralRegistry}: every transition of DOMAIN.md's lifecycle table, its
 * happy path (state and event), and through {_checkApprovals} every missing or wrong signature, a reused
 * or future nonce, an expired deadline and typed data of another chain or contract.
 */
contract CollateralRegistryTest is CollateralFixture {
    function setUp() public {
        _deployFixture(newFixtureRegistry());
    }

    ICollateralRegistry.Status internal constant NONE = ICollateralRegistry.Status.None;
    ICollateralRegistry.Status internal constant INBOUND = ICollateralRegistry.Status.Inbound;
    ICollateralRegistry.Status internal constant VERIFIED = ICollateralRegistry.Status.Verified;
    ICollateralRegistry.Status internal constant PLEDGED = ICollateralRegistry.Status.Pledged;
    ICollateralRegistry.Status internal constant MARGIN_CALL = ICollateralRegistry.Status.MarginCall;
    ICollateralRegistry.Status internal constant FROZEN = ICollateralRegistry.Status.Frozen;
    ICollateralRegistry.Status internal constant DEFAULTED = ICollateralRegistry.Status.Defaulted;
    ICollateralRegistry.Status internal constant ENFORCEMENT = ICollateralRegistry.Status.Enforcement;
    ICollateralRegistry.Status internal constant RELEASED = ICollateralRegistry.Status.Released;
    ICollateralRegistry.Status internal constant CLOSED = ICollateralRegistry.Status.Closed;

    function _status() internal view returns (ICollateralRegistry.Status) {
        return registry.lotOf(lot).status;
    }

    function _assertStatus(ICollateralRegistry.Status expected, string memory what) internal view {
        vm.assertEq(uint256(_status()), uint256(expected), what);
    }

    // ---------------------------------------------------------------- deployment and organisations

    function test_constructor_rolesDelayAndDomain() public view {
        vm.assertEq(registry.defaultAdmin(), ADMIN, "default admin");
        vm.assertEq(uint256(registry.defaultAdminDelay()), uint256(ADMIN_DELAY), "admin delay");
        vm.assertTrue(registry.hasRole(registry.REGISTRAR_ROLE(), REGISTRAR), "registrar");
        vm.assertTrue(registry.hasRole(registry.SUPERVISOR_ROLE(), vm.addr(SUPERVISOR_KEY)), "supervisor");
        vm.assertFalse(registry.hasRole(registry.REGISTRAR_ROLE(), ADMIN), "admin is not registrar");
        vm.assertEq(registry.REGISTRAR_ROLE(), keccak256("REGISTRAR_ROLE"), "REGISTRAR_ROLE");
        vm.assertEq(registry.SUPERVISOR_ROLE(), keccak256("SUPERVISOR_ROLE"), "SUPERVISOR_ROLE");
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = registry.eip712Domain();
        vm.assertEq(keccak256(bytes(name)), keccak256("CollateralRegistry"), "domain name");
        vm.assertEq(keccak256(bytes(version)), keccak256("1"), "domain version");
        vm.assertEq(chainId, block.chainid, "domain chain id");
        vm.assertEq(verifying, address(registry), "domain contract");
        vm.assertEq(uint256(registry.organisationCount()), 7, "organisations of the fixture");
    }

    function test_registerOrganisation_storesSignerRoleAndNonce() public {
        uint256 key = 0x0E2;
        address signer = vm.addr(key);
        vm.assertEq(registry.nonces(signer), 0, "fresh key");
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.OrganisationRegistered(8, ICollateralRegistry.Role.Enterprise, signer, "Steel Co");
        uint24 org = _registerOrganisation(ICollateralRegistry.Role.Enterprise, key, "Steel Co");

        vm.assertEq(uint256(org), 8, "sequential id");
        ICollateralRegistry.Organisation memory o = registry.organisation(org);
        vm.assertEq(o.signer, signer, "signer");
        vm.assertEq(uint256(o.role), uint256(ICollateralRegistry.Role.Enterprise), "role");
        vm.assertTrue(o.active, "active");
        vm.assertEq(uint256(o.nonce), 1, "proof of possession used nonce 0");
        vm.assertEq(registry.nonces(signer), 1, "nonces() reads the organisation's slot");
        vm.assertEq(uint256(registry.organisationOf(signer)), uint256(org), "organisationOf");
        vm.assertEq(uint256(registry.organisationOf(vm.addr(STRANGER_KEY))), 0, "organisationOf(stranger)");
        vm.assertEq(uint256(registry.organisation(99).role), 0, "unknown organisation");
    }

    function test_registerOrganisation_approvals() public {
        bytes32 registrarRole = registry.REGISTRAR_ROLE();
        vm.prank(ADMIN);
        registry.grantRole(registrarRole, address(this));
        _checkApprovals(_registerStrangerCall, _keys(STRANGER_KEY));
        vm.assertEq(uint256(registry.organisationOf(vm.addr(STRANGER_KEY))), 8, "registered once");
    }

    function _registerStrangerCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        address signer = vm.addr(STRANGER_KEY);
        ICollateralRegistry.Role role = ICollateralRegistry.Role.Bank;
        bytes[] memory sigs = _sigs(TD.registerOrganisation(role, signer, "Bank C", n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.registerOrganisation, (role, signer, "Bank C", deadline, n, sigs));
    }

    function test_registerOrganisation_onlyRegistrar() public {
        address[3] memory callers = [ADMIN, vm.addr(BANK_KEY), vm.addr(STRANGER_KEY)];
        bytes memory data = _registerStrangerCall(_keys(STRANGER_KEY), _noncesOf(_keys(STRANGER_KEY)), _deadline());
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.prank(callers[i]);
            (bool ok, bytes memory reason) = address(registry).call(data);
            vm.assertFalse(ok, "registered by a non-registrar");
            vm.assertEq(
                reason,
                abi.encodeWithSelector(
                    IAccessControl.AccessControlUnauthorizedAccount.selector, callers[i], registry.REGISTRAR_ROLE()
                ),
                "revert reason"
            );
        }
    }

    function test_registerOrganisation_invalidSignerRoleOrReuse() public {
        uint256[] memory none = new uint256[](0);
        bytes[] memory noSigs = new bytes[](0);
        vm.startPrank(REGISTRAR);
        vm.expectRevert(
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryInvalidOrganisation.selector,
                address(0),
                ICollateralRegistry.Role.Bank
            )
        );
        registry.registerOrganisation(ICollateralRegistry.Role.Bank, address(0), "x", _deadline(), none, noSigs);
        vm.expectRevert(
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryInvalidOrganisation.selector,
                vm.addr(STRANGER_KEY),
                ICollateralRegistry.Role.None
            )
        );
        registry.registerOrganisation(
            ICollateralRegistry.Role.None, vm.addr(STRANGER_KEY), "x", _deadline(), none, noSigs
        );
        vm.stopPrank();

        // A key signs for one organisation only: a warehouse's key cannot also be the enterprise's.
        vm.expectRevert(
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistrySignerInUse.selector, vm.addr(WAREHOUSE_KEY), warehouse
            )
        );
        this.registerAs(ICollateralRegistry.Role.Enterprise, WAREHOUSE_KEY);
    }

    /// @dev External, so `vm.expectRevert` can watch the registration alone.
    function registerAs(ICollateralRegistry.Role role, uint256 key) external returns (uint24) {
        return _registerOrganisation(role, key, "again");
    }

    function test_registerOrganisation_outOfRangeRoleReverts() public {
        bytes memory data = abi.encodeWithSelector(
            ICollateralRegistry.registerOrganisation.selector,
            uint256(6),
            vm.addr(STRANGER_KEY),
            "x",
            _deadline(),
            new uint256[](0),
            new bytes[](0)
        );
        vm.prank(REGISTRAR);
        (bool ok,) = address(registry).call(data);
        vm.assertFalse(ok, "Role out of range accepted");
    }

    function test_rotateSigner_movesKeyAndNonceSequences() public {
        _toVerified();
        uint256 newKey = 0xBA3;
        address oldSigner = vm.addr(BANK_KEY);
        address newSigner = vm.addr(newKey);
        uint256 oldNonce = registry.nonces(oldSigner);

        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.OrganisationSignerRotated(bank, oldSigner, newSigner);
        _rotateBankKey(newKey);

        vm.assertEq(registry.organisation(bank).signer, newSigner, "new signer");
        vm.assertEq(uint256(registry.organisationOf(newSigner)), uint256(bank), "organisationOf(new)");
        vm.assertEq(uint256(registry.organisationOf(oldSigner)), 0, "organisationOf(old)");
        vm.assertEq(registry.nonces(oldSigner), oldNonce + 1, "old key's sequence continues where it was");
        vm.assertEq(registry.nonces(newSigner), 1, "new key's sequence continues after its proof");

        // The old key no longer speaks for the bank; the new one does.
        _refuse(
            _pledgeCall(_keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY), _pledgeNonces(newKey), _deadline()),
            _errApproval(1, newSigner),
            "old bank key"
        );
        _exec(_pledgeCall(_keys(ENTERPRISE_KEY, newKey, WAREHOUSE_KEY), _pledgeNonces(newKey), _deadline()));
        _assertStatus(PLEDGED, "pledged with the new key");

        // A retired key can never be registered again, not even for its own organisation.
        vm.expectRevert(
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistrySignerInUse.selector, oldSigner, bank)
        );
        this.registerAs(ICollateralRegistry.Role.Bank, BANK_KEY);
    }

    function _pledgeNonces(uint256 bankKey) internal view returns (uint256[] memory) {
        return _noncesOf(_keys(ENTERPRISE_KEY, bankKey, WAREHOUSE_KEY));
    }

    uint256 internal rotateTo;

    function _rotateBankKey(uint256 newKey) internal {
        rotateTo = newKey;
        _run(_rotateCall, _keys(BANK_KEY, newKey));
    }

    function _rotateCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        address newSigner = vm.addr(rotateTo);
        bytes[] memory sigs = _sigs(TD.rotateSigner(bank, newSigner, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.rotateSigner, (bank, newSigner, deadline, n, sigs));
    }

    function test_rotateSigner_approvals() public {
        rotateTo = 0xBA3;
        _checkApprovals(_rotateCall, _keys(BANK_KEY, 0xBA3));
        vm.assertEq(registry.organisation(bank).signer, vm.addr(0xBA3), "rotated");
    }

    function test_rotateSigner_toAKeyInUseOrZeroReverts() public {
        rotateTo = ENTERPRISE_KEY;
        _refuse(
            _rotateCall(_keys(BANK_KEY, ENTERPRISE_KEY), _noncesOf(_keys(BANK_KEY, ENTERPRISE_KEY)), _deadline()),
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistrySignerInUse.selector, vm.addr(ENTERPRISE_KEY), enterprise
            ),
            "rotate to another organisation's key"
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryInvalidOrganisation.selector,
                address(0),
                ICollateralRegistry.Role.Bank
            )
        );
        registry.rotateSigner(bank, address(0), _deadline(), new uint256[](0), new bytes[](0));
        vm.expectRevert(
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnknownOrganisation.selector, uint24(99))
        );
        registry.rotateSigner(99, vm.addr(0xBA3), _deadline(), new uint256[](0), new bytes[](0));
    }

    function test_setOrganisationActive_blocksNewLotsOnly() public {
        _toInbound();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.OrganisationActiveSet(warehouse, false);
        vm.prank(REGISTRAR);
        registry.setOrganisationActive(warehouse, false);

        // The lot it already holds moves on: its signature still counts there.
        qty = QUANTITY;
        _run(_verifyLotCall, _keys(WAREHOUSE_KEY, ENTERPRISE_KEY));
        _assertStatus(VERIFIED, "verified by an inactive warehouse's lot");

        // It cannot be named in a new lot.
        lot = keccak256("e-receipt:WH1-2025-0002");
        delete rec.devices;
        rec.devices.push(keccak256("wh1:scale-09"));
        _refuse(
            _registerLotCall(_keys(WAREHOUSE_KEY), _noncesOf(_keys(WAREHOUSE_KEY)), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInactiveOrganisation.selector, warehouse),
            "inactive warehouse"
        );
        vm.prank(REGISTRAR);
        registry.setOrganisationActive(warehouse, true);
        _toInbound();
        _assertStatus(INBOUND, "active again");
    }

    function test_setOrganisationActiveAndAffiliation_onlyRegistrarKnownOrganisations() public {
        bytes32 role = registry.REGISTRAR_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, ADMIN, role));
        vm.prank(ADMIN);
        registry.setOrganisationActive(bank, false);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, address(this), role)
        );
        registry.setAffiliation(warehouse, enterprise, true);

        vm.startPrank(REGISTRAR);
        vm.expectRevert(
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnknownOrganisation.selector, uint24(42))
        );
        registry.setOrganisationActive(42, false);
        vm.expectRevert(
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnknownOrganisation.selector, uint24(42))
        );
        registry.setAffiliation(warehouse, 42, true);
        vm.expectRevert(
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnknownOrganisation.selector, warehouse)
        );
        registry.setAffiliation(warehouse, warehouse, true);

        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.AffiliationSet(enterprise, warehouse, true);
        registry.setAffiliation(enterprise, warehouse, true);
        vm.stopPrank();
        vm.assertTrue(registry.isAffiliated(warehouse, enterprise), "symmetric");
        vm.assertTrue(registry.isAffiliated(enterprise, warehouse), "symmetric");
        vm.assertFalse(registry.isAffiliated(otherWarehouse, enterprise), "others unaffected");
    }

    // ---------------------------------------------------------------- → Inbound

    function test_registerLot_storesLotAndBindsDevices() public {
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotRegistered(lot, warehouse, enterprise, rec.goods, QUANTITY, "kg", rec.devices);
        _toInbound();

        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.status), uint256(INBOUND), "status");
        vm.assertEq(uint256(l.warehouse), uint256(warehouse), "warehouse");
        vm.assertEq(uint256(l.enterprise), uint256(enterprise), "enterprise");
        vm.assertEq(uint256(l.bank), 0, "no bank yet");
        vm.assertEq(uint256(l.quantity), QUANTITY, "quantity");
        vm.assertEq(bytes32(l.unit), bytes32(bytes8("kg")), "unit");
        vm.assertEq(l.goods, rec.goods, "goods");
        vm.assertEq(l.assay, bytes32(0), "no assay yet");
        for (uint256 i = 0; i < rec.devices.length; ++i) {
            vm.assertEq(registry.lotOfDevice(rec.devices[i]), lot, "device bound");
        }
    }

    function test_registerLot_approvals() public {
        _checkApprovals(_registerLotCall, _keys(WAREHOUSE_KEY));
        _assertStatus(INBOUND, "registered");
    }

    function test_registerLot_validation() public {
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        _toInbound();
        _refuse(
            _registerLotCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryLotExists.selector, lot),
            "same receipt twice"
        );
        lot = keccak256("e-receipt:other");
        delete rec.devices;
        rec.devices.push(keccak256("wh1:scale-77"));

        rec.goods = 0;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no goods record");
        rec.goods = keccak256("goods");
        rec.unit = 0;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no unit");
        rec.unit = "t";
        rec.quantity = 0;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "zero quantity");
        rec.quantity = 5;

        rec.enterprise = bank;
        _refuse(
            _registerLotCall(k, _noncesOf(k), _deadline()),
            _errRole(bank, ICollateralRegistry.Role.Enterprise, ICollateralRegistry.Role.Bank),
            "a bank as the pledgor"
        );
        rec.enterprise = enterprise;
        rec.warehouse = insurer;
        _refuse(
            _registerLotCall(_keys(INSURER_KEY), _noncesOf(_keys(INSURER_KEY)), _deadline()),
            _errRole(insurer, ICollateralRegistry.Role.Warehouse, ICollateralRegistry.Role.Insurer),
            "an insurer as the warehouse"
        );
        rec.warehouse = 77;
        _refuse(
            _registerLotCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryUnknownOrganisation.selector, uint24(77)),
            "unknown warehouse"
        );
        rec.warehouse = warehouse;

        bytes32 saved = lot;
        lot = 0;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errMissing(0), "zero lot id");
        lot = saved;
    }

    function test_registerLot_devices() public {
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        delete rec.devices;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errDevices(0), "no device");
        for (uint256 i = 0; i < 17; ++i) {
            rec.devices.push(keccak256(abi.encode("device", i)));
        }
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errDevices(17), "17 devices");
        rec.devices.pop();
        rec.devices[3] = 0;
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), _errDevices(16), "zero device id");
        rec.devices[3] = rec.devices[4];
        _refuse(
            _registerLotCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryDeviceInUse.selector, rec.devices[4], lot),
            "a device listed twice"
        );
        rec.devices[3] = keccak256("device 3");
        _toInbound();
        vm.assertEq(registry.lotOfDevice(rec.devices[15]), lot, "16 devices are fine");
    }

    // ---------------------------------------------------------------- Inbound → Verified

    function test_verifyLot_recordsAssayAndStocktake() public {
        _toInbound();
        qty = QUANTITY - 37; // the first stocktake counts a little less than announced
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotVerified(lot, assay, QUANTITY - 37);
        _run(_verifyLotCall, _keys(WAREHOUSE_KEY, ENTERPRISE_KEY));
        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.status), uint256(VERIFIED), "status");
        vm.assertEq(l.assay, assay, "assay");
        vm.assertEq(uint256(l.quantity), QUANTITY - 37, "stocktake quantity");
    }

    function test_verifyLot_approvals() public {
        _toInbound();
        _checkApprovals(_verifyLotCall, _keys(WAREHOUSE_KEY, ENTERPRISE_KEY));
        _assertStatus(VERIFIED, "verified");
    }

    function test_verifyLot_needsAssayQuantityAndInbound() public {
        uint256[] memory k = _keys(WAREHOUSE_KEY, ENTERPRISE_KEY);
        _refuse(_verifyLotCall(k, _noncesOf(k), _deadline()), _errStatus(lot, NONE), "unknown lot");
        _toInbound();
        assay = 0;
        _refuse(_verifyLotCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no assay record");
        assay = keccak256("assay");
        qty = 0;
        _refuse(_verifyLotCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "zero quantity");
        qty = QUANTITY;
        _run(_verifyLotCall, k);
        _refuse(_verifyLotCall(k, _noncesOf(k), _deadline()), _errStatus(lot, VERIFIED), "verified twice");
    }

    // ---------------------------------------------------------------- Verified → Pledged

    function test_pledge_recordsBankTermsAndControlStart() public {
        _toVerified();
        vm.warp(T0 + 1234);
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotPledged(
            lot, bank, terms.registration, terms.terms, QUANTITY, MINIMUM, uint40(T0 + 1234)
        );
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));

        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.status), uint256(PLEDGED), "status");
        vm.assertEq(uint256(l.bank), uint256(bank), "bank");
        vm.assertEq(uint256(l.minQuantity), MINIMUM, "minimum control quantity");
        vm.assertEq(uint256(l.controlStart), T0 + 1234, "control start");
        vm.assertEq(registry.lotOfRegistration(terms.registration), lot, "registration in a live pledge");
    }

    function test_pledge_approvals() public {
        _toVerified();
        _checkApprovals(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(PLEDGED, "pledged");
    }

    function test_pledge_validation() public {
        uint256[] memory k = _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY);
        _toInbound();
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), _errStatus(lot, INBOUND), "not verified (no assay)");
        qty = QUANTITY;
        _run(_verifyLotCall, _keys(WAREHOUSE_KEY, ENTERPRISE_KEY));

        terms.quantity = QUANTITY + 1;
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, QUANTITY + 1), "not the lot's quantity");
        terms.quantity = QUANTITY;
        terms.minQuantity = QUANTITY + 1;
        _refuse(
            _pledgeCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryBelowMinimum.selector, lot, QUANTITY, QUANTITY + 1
            ),
            "minimum above the quantity"
        );
        terms.minQuantity = MINIMUM;
        terms.registration = 0;
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no registration number");
        terms.registration = keccak256("reg");
        terms.terms = 0;
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no loan terms");
        terms.terms = keccak256("terms");
        terms.bank = warehouse;
        _refuse(
            _pledgeCall(_keys(ENTERPRISE_KEY, WAREHOUSE_KEY, WAREHOUSE_KEY), _noncesOf(k), _deadline()),
            _errRole(warehouse, ICollateralRegistry.Role.Bank, ICollateralRegistry.Role.Warehouse),
            "a warehouse as the bank"
        );
        terms.bank = bank;
        vm.prank(REGISTRAR);
        registry.setOrganisationActive(bank, false);
        _refuse(
            _pledgeCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInactiveOrganisation.selector, bank),
            "inactive bank"
        );
        terms.minQuantity = QUANTITY; // the whole lot may be the minimum
        terms.bank = otherBank;
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, OTHER_BANK_KEY, WAREHOUSE_KEY));
        vm.assertEq(uint256(registry.lotOf(lot).bank), uint256(otherBank), "pledged to the other bank");
    }

    // ---------------------------------------------------------------- Pledged → Pledged (partial release)

    function test_partialRelease_reducesQuantityAndCountsReleased() public {
        _toPledged();
        qty = 1_500;
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotPartiallyReleased(lot, 1_500, QUANTITY - 1_500);
        _run(_partialReleaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.quantity), QUANTITY - 1_500, "remaining");
        vm.assertEq(uint256(l.released), 1_500, "released");
        vm.assertEq(uint256(l.status), uint256(PLEDGED), "still pledged");

        qty = QUANTITY - 1_500 - MINIMUM; // down to exactly the minimum
        _run(_partialReleaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        vm.assertEq(uint256(registry.lotOf(lot).quantity), MINIMUM, "at the minimum");
        vm.assertEq(uint256(registry.lotOf(lot).released), QUANTITY - MINIMUM, "released in total");
    }

    function test_partialRelease_approvals() public {
        _toPledged();
        qty = 100;
        _checkApprovals(_partialReleaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        vm.assertEq(uint256(registry.lotOf(lot).quantity), QUANTITY - 100, "released once");
    }

    function test_partialRelease_quantityAndStatus() public {
        uint256[] memory k = _keys(BANK_KEY, WAREHOUSE_KEY);
        _toVerified();
        qty = 1;
        _refuse(_partialReleaseCall(k, _noncesOf(k), _deadline()), _errStatus(lot, VERIFIED), "not pledged");
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));
        qty = 0;
        _refuse(_partialReleaseCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "nothing");
        qty = QUANTITY + 1;
        _refuse(_partialReleaseCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, QUANTITY + 1), "more than held");
        qty = QUANTITY - MINIMUM + 1;
        _refuse(
            _partialReleaseCall(k, _noncesOf(k), _deadline()),
            _errBelowMinimum(lot, MINIMUM - 1, MINIMUM),
            "below the minimum"
        );
        _run(_marginCallCall, _keys(BANK_KEY));
        qty = 1;
        _refuse(_partialReleaseCall(k, _noncesOf(k), _deadline()), _errStatus(lot, MARGIN_CALL), "during a margin call");
    }

    // ---------------------------------------------------------------- Pledged → Pledged (substitution)

    function test_substitution_newGoodsInBeforeOldGoodsLeave() public {
        _toPledged();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.SubstitutionGoodsVerified(lot, sub.goods, sub.assay, 3_000, 2_000);
        _run(_substituteInCall, _keys(ENTERPRISE_KEY, WAREHOUSE_KEY));
        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.quantity), QUANTITY + 3_000, "old and new goods both under control");
        vm.assertEq(l.goods, rec.goods, "still described as the old goods");
        vm.assertEq(registry.pendingSubstitution(lot), keccak256(abi.encode(sub)), "pending");

        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.SubstitutionCompleted(lot, sub.goods, sub.assay, 2_000, QUANTITY + 1_000);
        _run(_substituteOutCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        l = registry.lotOf(lot);
        vm.assertEq(uint256(l.quantity), QUANTITY + 1_000, "old goods out");
        vm.assertEq(l.goods, sub.goods, "new description");
        vm.assertEq(l.assay, sub.assay, "new assay");
        vm.assertEq(uint256(l.released), 0, "a substitution is not a release");
        vm.assertEq(registry.pendingSubstitution(lot), bytes32(0), "done");
    }

    function test_substituteIn_approvals() public {
        _toPledged();
        _checkApprovals(_substituteInCall, _keys(ENTERPRISE_KEY, WAREHOUSE_KEY));
        vm.assertEq(registry.pendingSubstitution(lot), keccak256(abi.encode(sub)), "pending");
    }

    function test_substituteOut_approvals() public {
        _toPledged();
        _run(_substituteInCall, _keys(ENTERPRISE_KEY, WAREHOUSE_KEY));
        _checkApprovals(_substituteOutCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        vm.assertEq(registry.lotOf(lot).goods, sub.goods, "completed");
    }

    function test_substitution_outNeedsTheVerifiedInboundFirst() public {
        uint256[] memory bankWarehouse = _keys(BANK_KEY, WAREHOUSE_KEY);
        uint256[] memory enterpriseWarehouse = _keys(ENTERPRISE_KEY, WAREHOUSE_KEY);
        _toPledged();
        bytes memory noSub = abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryNoSubstitution.selector, lot);
        _refuse(_substituteOutCall(bankWarehouse, _noncesOf(bankWarehouse), _deadline()), noSub, "out before in");

        _run(_substituteInCall, enterpriseWarehouse);
        _refuse(
            _substituteInCall(enterpriseWarehouse, _noncesOf(enterpriseWarehouse), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistrySubstitutionPending.selector, lot),
            "a second substitution while one is pending"
        );
        ICollateralRegistry.Substitution memory verified = sub;
        sub.quantityOut += 1; // the bank is asked to approve more going out than was requested
        _refuse(_substituteOutCall(bankWarehouse, _noncesOf(bankWarehouse), _deadline()), noSub, "altered");
        sub = verified;
        sub.goods = keccak256("other goods");
        _refuse(_substituteOutCall(bankWarehouse, _noncesOf(bankWarehouse), _deadline()), noSub, "altered goods");
        sub = verified;
        _run(_substituteOutCall, bankWarehouse);
    }

    function test_substitution_validation() public {
        uint256[] memory k = _keys(ENTERPRISE_KEY, WAREHOUSE_KEY);
        _toPledged();
        sub.goods = 0;
        _refuse(_substituteInCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no goods record");
        sub.goods = keccak256("g");
        sub.assay = 0;
        _refuse(
            _substituteInCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no assay (right weight, wrong goods)"
        );
        sub.assay = keccak256("a");
        sub.quantityIn = 0;
        _refuse(_substituteInCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "nothing in");
        sub.quantityIn = 10;
        sub.quantityOut = 0;
        _refuse(_substituteInCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "nothing out");
        sub.quantityOut = QUANTITY + 11;
        _refuse(_substituteInCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, QUANTITY + 11), "more out than held");
        // Out would leave less than the minimum: accepted in, refused out.
        sub.quantityOut = QUANTITY + 10 - MINIMUM + 1;
        _run(_substituteInCall, k);
        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        _refuse(
            _substituteOutCall(bw, _noncesOf(bw), _deadline()),
            _errBelowMinimum(lot, MINIMUM - 1, MINIMUM),
            "substitution below the minimum"
        );
    }

    function test_substitution_pendingIsDroppedWhenThePledgeEnds() public {
        _toPledged();
        _run(_substituteInCall, _keys(ENTERPRISE_KEY, WAREHOUSE_KEY));
        qty = registry.lotOf(lot).quantity;
        _run(_releaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        vm.assertEq(registry.pendingSubstitution(lot), bytes32(0), "no pending substitution after release");
    }

    // ---------------------------------------------------------------- Pledged → MarginCall → Pledged

    function test_marginCall_byBankOrSupervisor() public {
        _toPledged();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.MarginCalled(lot, vm.addr(BANK_KEY), ref, uint40(block.timestamp + 1 days));
        _run(_marginCallCall, _keys(BANK_KEY));
        _assertStatus(MARGIN_CALL, "by the bank");
        vm.assertEq(uint256(registry.lotOf(lot).cureBy), block.timestamp + 1 days, "cure deadline recorded");

        _run(_cureWithCashCall, _keys(BANK_KEY));
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.MarginCalled(lot, vm.addr(SUPERVISOR_KEY), ref, uint40(block.timestamp + 1 days));
        _run(_marginCallCall, _keys(SUPERVISOR_KEY));
        _assertStatus(MARGIN_CALL, "by the supervision key");
        vm.assertEq(registry.nonces(vm.addr(SUPERVISOR_KEY)), 1, "supervisor nonce used");
    }

    function test_marginCall_refusesEveryOtherSigner() public {
        _toPledged();
        _checkSingleApproval(_marginCallCall, BANK_KEY, SUPERVISOR_KEY);
        _assertStatus(MARGIN_CALL, "called");
    }

    function test_marginCall_givesAtLeastTheMinimumCurePeriod() public {
        _toPledged();
        uint256[] memory k = _keys(SUPERVISOR_KEY);
        uint256 earliest = block.timestamp + registry.MIN_CURE_PERIOD();
        cureBy = uint40(earliest - 1);
        _refuse(_marginCallCall(k, _noncesOf(k), _deadline()), _errCurePeriodTooShort(lot, cureBy, earliest), "short");
        cureBy = uint40(earliest);
        _run(_marginCallCall, k);
        vm.assertEq(uint256(registry.lotOf(lot).cureBy), earliest, "exactly the minimum");
    }

    // ---------------------------------------------------------------- MarginCall → Defaulted, uncured

    function test_defaultUncured_onlyAfterTheCureDeadline() public {
        _toMarginCall();
        uint40 deadline = registry.lotOf(lot).cureBy;
        uint256[] memory s = _keys(SUPERVISOR_KEY);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), _errCureRunning(lot, deadline), "during the period");
        vm.warp(deadline);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), _errCureRunning(lot, deadline), "at the deadline");
        vm.warp(uint256(deadline) + 1);
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotDefaulted(lot, ref);
        _run(_defaultUncuredCall, s);
        _assertStatus(DEFAULTED, "uncured call ended in default");
        vm.assertEq(registry.lotOfRegistration(terms.registration), lot, "still a live pledge");
    }

    function test_defaultUncured_onlyTheSupervisionKey() public {
        _toMarginCall();
        vm.warp(uint256(registry.lotOf(lot).cureBy) + 1);
        bytes32 before = _snapshot();
        uint256[7] memory others =
            [STRANGER_KEY, ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY, OTHER_BANK_KEY, OTHER_WAREHOUSE_KEY, INSURER_KEY];
        for (uint256 i = 0; i < others.length; ++i) {
            uint256[] memory k = _keys(others[i]);
            _refuse(_defaultUncuredCall(k, _noncesOf(k), _deadline()), _errUnauthorizedSigner(vm.addr(others[i])), "other");
        }
        uint256[] memory s = _keys(SUPERVISOR_KEY);
        uint256[] memory n = _noncesOf(s);
        _refuse(_defaultUncuredCall(s, _replace(n, 0, n[0] + 1), _deadline()), _errNonce(vm.addr(SUPERVISOR_KEY), n[0]), "nonce");
        _refuse(_defaultUncuredCall(s, n, block.timestamp - 1), _errExpired(block.timestamp - 1), "expired");
        vm.assertEq(_snapshot(), before, "a refused default changed state");
        _run(_defaultUncuredCall, s);
        _assertStatus(DEFAULTED, "defaulted");
    }

    /// @dev The supervision key cannot default a lot that is not under a margin call, nor one cured in time.
    function test_defaultUncured_onlyFromAnOpenMarginCall() public {
        uint256[] memory s = _keys(SUPERVISOR_KEY);
        _toPledged();
        vm.warp(block.timestamp + 30 days);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), _errStatus(lot, PLEDGED), "pledged");
        _run(_marginCallCall, _keys(SUPERVISOR_KEY));
        _run(_cureWithCashCall, _keys(BANK_KEY));
        vm.warp(block.timestamp + 2 days);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), _errStatus(lot, PLEDGED), "cured in time");
        _run(_marginCallCall, _keys(BANK_KEY));
        _run(_freezeCall, _keys(WAREHOUSE_KEY));
        vm.warp(block.timestamp + 2 days);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), _errStatus(lot, FROZEN), "frozen: the bank decides");
    }

    function test_cureWithGoods_addsGoodsAndReturnsToPledged() public {
        _toMarginCall();
        qty = 2_500;
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.MarginCallCuredWithGoods(lot, goods2, assay, 2_500);
        _run(_cureWithGoodsCall, _keys(WAREHOUSE_KEY));
        ICollateralRegistry.Lot memory l = registry.lotOf(lot);
        vm.assertEq(uint256(l.status), uint256(PLEDGED), "cured");
        vm.assertEq(uint256(l.quantity), QUANTITY + 2_500, "more goods");
        vm.assertEq(l.goods, goods2, "description of the whole lot");
    }

    function test_cureWithGoods_approvalsAndValidation() public {
        _toMarginCall();
        qty = 0;
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        _refuse(_cureWithGoodsCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, 0), "no goods");
        qty = 10;
        assay = 0;
        _refuse(_cureWithGoodsCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no assay");
        assay = keccak256("assay top-up");
        _checkApprovals(_cureWithGoodsCall, k);
        _assertStatus(PLEDGED, "cured");
        _refuse(_cureWithGoodsCall(k, _noncesOf(k), _deadline()), _errStatus(lot, PLEDGED), "no margin call");
    }

    function test_cureWithCash_bankConfirms() public {
        _toMarginCall();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.MarginCallCuredWithCash(lot, ref);
        _run(_cureWithCashCall, _keys(BANK_KEY));
        _assertStatus(PLEDGED, "cured");
        vm.assertEq(uint256(registry.lotOf(lot).quantity), QUANTITY, "no goods moved");
    }

    function test_cureWithCash_approvals() public {
        _toMarginCall();
        _checkApprovals(_cureWithCashCall, _keys(BANK_KEY));
        _assertStatus(PLEDGED, "cured");
    }

    function test_cureWithCash_needsPaymentAndMarginCall() public {
        uint256[] memory k = _keys(BANK_KEY);
        _toPledged();
        _refuse(_cureWithCashCall(k, _noncesOf(k), _deadline()), _errStatus(lot, PLEDGED), "no margin call");
        _run(_marginCallCall, k);
        ref = 0;
        _refuse(_cureWithCashCall(k, _noncesOf(k), _deadline()), _errMissing(lot), "no payment reference");
    }

    // ---------------------------------------------------------------- Pledged/MarginCall → Frozen → back

    function test_freeze_byWarehouseOrSupervisor_unfreezeRestoresStatus() public {
        _toPledged();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotFrozen(lot, vm.addr(WAREHOUSE_KEY), ref);
        _run(_freezeCall, _keys(WAREHOUSE_KEY));
        _assertStatus(FROZEN, "frozen by the warehouse");
        vm.assertEq(uint256(registry.lotOf(lot).frozenFrom), uint256(PLEDGED), "frozen from Pledged");

        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotUnfrozen(lot, PLEDGED);
        _run(_unfreezeCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(PLEDGED, "back to Pledged");

        _run(_marginCallCall, _keys(BANK_KEY));
        _run(_freezeCall, _keys(SUPERVISOR_KEY));
        vm.assertEq(uint256(registry.lotOf(lot).frozenFrom), uint256(MARGIN_CALL), "frozen from MarginCall");
        _run(_unfreezeCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(MARGIN_CALL, "back to MarginCall");
        vm.assertEq(uint256(registry.lotOf(lot).frozenFrom), 0, "cleared");
    }

    function test_freeze_refusesEveryOtherSigner() public {
        _toPledged();
        _checkSingleApproval(_freezeCall, WAREHOUSE_KEY, SUPERVISOR_KEY);
        _assertStatus(FROZEN, "frozen");
    }

    function test_freeze_onlyALivePledge() public {
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        _toVerified();
        _refuse(_freezeCall(k, _noncesOf(k), _deadline()), _errStatus(lot, VERIFIED), "not pledged");
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));
        _run(_freezeCall, k);
        _refuse(_freezeCall(k, _noncesOf(k), _deadline()), _errStatus(lot, FROZEN), "frozen twice");
    }

    function test_unfreeze_approvals() public {
        _toFrozen();
        _checkApprovals(_unfreezeCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(PLEDGED, "unfrozen");
    }

    // ---------------------------------------------------------------- → Default → Enforcement

    function test_default_thenEnforcement() public {
        _toFrozen();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotDefaulted(lot, ref);
        _run(_defaultCall, _keys(BANK_KEY));
        _assertStatus(DEFAULTED, "defaulted from Frozen");
        vm.assertEq(uint256(registry.lotOf(lot).frozenFrom), 0, "freeze superseded");
        vm.assertEq(registry.lotOfRegistration(terms.registration), lot, "still a live pledge");

        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotEnforcementStarted(lot);
        _run(_enforceCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(ENFORCEMENT, "enforcement");
        vm.assertEq(registry.lotOfRegistration(terms.registration), lot, "live until closed");
    }

    function test_default_approvals() public {
        _toMarginCall();
        _checkApprovals(_defaultCall, _keys(BANK_KEY));
        _assertStatus(DEFAULTED, "defaulted");
    }

    function test_enforce_approvals() public {
        _toDefaulted();
        _checkApprovals(_enforceCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(ENFORCEMENT, "enforcement");
    }

    function test_defaultAndEnforce_status() public {
        uint256[] memory b = _keys(BANK_KEY);
        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        _toVerified();
        _refuse(_defaultCall(b, _noncesOf(b), _deadline()), _errStatus(lot, VERIFIED), "default before pledge");
        _run(_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY));
        _refuse(_enforceCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, PLEDGED), "enforce before default");
        _run(_defaultCall, b);
        _refuse(_defaultCall(b, _noncesOf(b), _deadline()), _errStatus(lot, DEFAULTED), "default twice");
        qty = QUANTITY;
        _refuse(_releaseCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, DEFAULTED), "release after default");
    }

    // ---------------------------------------------------------------- → Released → Closed

    function test_release_endsThePledge() public {
        _toPledged();
        qty = QUANTITY;
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotReleased(lot, QUANTITY);
        _run(_releaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(RELEASED, "released");
        vm.assertEq(registry.lotOfRegistration(terms.registration), bytes32(0), "registration free again");
        vm.assertEq(registry.lotOfDevice(rec.devices[0]), lot, "devices stay bound until the lot is closed");
    }

    function test_release_approvals() public {
        _toPledged();
        qty = QUANTITY;
        _checkApprovals(_releaseCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(RELEASED, "released");
    }

    function test_release_quantityMustBeAllTheLotHolds() public {
        uint256[] memory k = _keys(BANK_KEY, WAREHOUSE_KEY);
        _toPledged();
        qty = QUANTITY - 1;
        _refuse(_releaseCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, QUANTITY - 1), "less than held");
        qty = QUANTITY + 1;
        _refuse(_releaseCall(k, _noncesOf(k), _deadline()), _errQuantity(lot, QUANTITY + 1), "more than held");
        _run(_marginCallCall, _keys(BANK_KEY));
        qty = QUANTITY;
        _run(_releaseCall, k); // repaid during a margin call
        _assertStatus(RELEASED, "released from MarginCall");
    }

    function test_close_unpledgedLotByWarehouse() public {
        _toVerified();
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotClosed(lot, VERIFIED);
        _run(_closeCall, _keys(WAREHOUSE_KEY));
        _assertStatus(CLOSED, "closed");
        vm.assertEq(registry.lotOfDevice(rec.devices[0]), bytes32(0), "devices free");
    }

    function test_close_approvals() public {
        _toVerified();
        _checkApprovals(_closeCall, _keys(WAREHOUSE_KEY));
        _assertStatus(CLOSED, "closed");
    }

    function test_close_inboundLot() public {
        _toInbound();
        _run(_closeCall, _keys(WAREHOUSE_KEY));
        _assertStatus(CLOSED, "closed from Inbound");
    }

    function test_close_afterReleaseNeedsBankAndWarehouse() public {
        _toReleased();
        uint256[] memory w = _keys(WAREHOUSE_KEY);
        _refuse(_closeCall(w, _noncesOf(w), _deadline()), _errCount(2, 1, 1), "warehouse alone");
        _checkApprovals(_closePledgedCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(CLOSED, "closed");
    }

    function test_close_afterEnforcement() public {
        _toEnforcement();
        _run(_closePledgedCall, _keys(BANK_KEY, WAREHOUSE_KEY));
        _assertStatus(CLOSED, "closed after enforcement");
        vm.assertEq(registry.lotOfRegistration(terms.registration), bytes32(0), "registration free");
    }

    function test_close_refusedWhilePledgedOrClosed() public {
        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        _refuse(_closeCall(_keys(WAREHOUSE_KEY), new uint256[](1), _deadline()), _errStatus(lot, NONE), "unknown");
        _toPledged();
        _refuse(_closePledgedCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, PLEDGED), "pledged");
        _run(_freezeCall, _keys(WAREHOUSE_KEY));
        _refuse(_closePledgedCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, FROZEN), "frozen");
        _run(_unfreezeCall, bw);
        qty = QUANTITY;
        _run(_releaseCall, bw);
        _run(_closePledgedCall, bw);
        _refuse(_closePledgedCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, CLOSED), "closed twice");
    }

    function test_closedLot_freesDevicesForANewLot() public {
        _toVerified();
        _run(_closeCall, _keys(WAREHOUSE_KEY));
        bytes32 first = lot;
        lot = keccak256("e-receipt:WH1-2025-0002");
        _toInbound();
        vm.assertEq(registry.lotOfDevice(rec.devices[0]), lot, "the scale now supervises the new lot");
        _refuse(
            _registerLotCall(_keys(WAREHOUSE_KEY), _noncesOf(_keys(WAREHOUSE_KEY)), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryLotExists.selector, lot),
            "same receipt"
        );
        lot = first;
        _refuse(
            _registerLotCall(_keys(WAREHOUSE_KEY), _noncesOf(_keys(WAREHOUSE_KEY)), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryLotExists.selector, first),
            "a closed receipt is never registered again"
        );
    }

    // ---------------------------------------------------------------- contract wallets (ERC-1271)

    function test_contractWalletBank_signsThroughERC1271() public {
        uint256 ownerKey = 0x5AFE;
        ContractWallet wallet = new ContractWallet(vm.addr(ownerKey));
        uint256[] memory n = new uint256[](1);
        uint256 deadline = _deadline();
        bytes[] memory sigs = new bytes[](1);
        sigs[0] = _sign(
            ownerKey, TD.registerOrganisation(ICollateralRegistry.Role.Bank, address(wallet), "Safe Bank", n, deadline)
        );
        vm.prank(REGISTRAR);
        uint24 safeBank = registry.registerOrganisation(
            ICollateralRegistry.Role.Bank, address(wallet), "Safe Bank", deadline, n, sigs
        );

        _toVerified();
        terms.bank = safeBank;
        // The wallet's owner signs for the wallet; the registry asks the wallet (ERC-1271).
        uint256[] memory nonces = new uint256[](3);
        nonces[0] = registry.nonces(vm.addr(ENTERPRISE_KEY));
        nonces[1] = registry.nonces(address(wallet));
        nonces[2] = registry.nonces(vm.addr(WAREHOUSE_KEY));
        vm.assertEq(nonces[1], 1, "the wallet's proof of possession used its nonce 0");
        bytes memory data = _pledgeCall(_keys(ENTERPRISE_KEY, ownerKey, WAREHOUSE_KEY), nonces, deadline);
        _exec(data);
        _assertStatus(PLEDGED, "pledged to a contract-wallet bank");

        // A key that is not the wallet's owner is refused.
        _toVerifiedFreshLot();
        nonces[0] = registry.nonces(vm.addr(ENTERPRISE_KEY));
        nonces[1] = registry.nonces(address(wallet));
        nonces[2] = registry.nonces(vm.addr(WAREHOUSE_KEY));
        terms.bank = safeBank;
        _refuse(
            _pledgeCall(_keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY), nonces, deadline),
            _errApproval(1, address(wallet)),
            "not the wallet owner"
        );
    }

    /// @dev A second verified lot with its own receipt, devices and registration number.
    function _toVerifiedFreshLot() internal {
        lot = keccak256("e-receipt:WH1-2025-0099");
        delete rec.devices;
        rec.devices.push(keccak256("wh1:scale-99"));
        terms.registration = keccak256("PBoC registration 2025-0099");
        _toVerified();
    }

    // ---------------------------------------------------------------- fuzz

    /// @dev Any deadline is accepted up to and including the current second, never after.
    function testFuzz_deadline(uint256 deadline, uint32 elapsed) public {
        _toPledged();
        deadline = _bound(deadline, T0, T0 + 10 days);
        vm.warp(T0 + elapsed % 20 days);
        qty = 1;
        uint256[] memory k = _keys(BANK_KEY, WAREHOUSE_KEY);
        bytes memory data = _partialReleaseCall(k, _noncesOf(k), deadline);
        (bool ok, bytes memory reason) = address(registry).call(data);
        vm.assertEq(ok, block.timestamp <= deadline, "accepted iff not expired");
        if (!ok) vm.assertEq(reason, _errExpired(deadline), "reason");
    }

    /// @dev Exactly the current nonce of each signer is accepted.
    function testFuzz_nonce(uint256 bankNonce, uint256 warehouseNonce) public {
        _toPledged();
        uint256[] memory k = _keys(BANK_KEY, WAREHOUSE_KEY);
        uint256[] memory current = _noncesOf(k);
        uint256[] memory n = new uint256[](2);
        n[0] = bankNonce % 3 == 0 ? current[0] : _bound(bankNonce, 0, current[0] + 3);
        n[1] = warehouseNonce % 3 == 0 ? current[1] : _bound(warehouseNonce, 0, current[1] + 3);
        qty = 1;
        (bool ok, bytes memory reason) = address(registry).call(_partialReleaseCall(k, n, _deadline()));
        vm.assertEq(ok, n[0] == current[0] && n[1] == current[1], "accepted iff both nonces are current");
        if (n[0] != current[0]) {
            vm.assertEq(reason, _errNonce(vm.addr(BANK_KEY), current[0]), "bank nonce");
        } else if (n[1] != current[1]) {
            vm.assertEq(reason, _errNonce(vm.addr(WAREHOUSE_KEY), current[1]), "warehouse nonce");
        }
    }

    /// @dev A random key in a random position of a pledge is refused unless it is that position's party.
    function testFuzz_pledge_randomSigner(uint256 key, uint8 position) public {
        key = _bound(key, 1, 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140);
        uint256 i = position % 3;
        _toVerified();
        uint256[] memory good = _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY);
        uint256[] memory n = _noncesOf(good);
        uint256[] memory k = _replace(good, i, key);
        (bool ok, bytes memory reason) = address(registry).call(_pledgeCall(k, n, _deadline()));
        vm.assertEq(ok, key == good[i], "accepted iff the right key");
        if (!ok) vm.assertEq(reason, _errApproval(i, vm.addr(good[i])), "reason");
    }

    /// @dev Partial releases are accepted iff 0 < q <= held and held - q >= minimum; released + held is constant.
    function testFuzz_partialRelease_accounting(uint64 minimum, uint64[4] memory quantities) public {
        terms.minQuantity = uint64(_bound(minimum, 0, QUANTITY));
        _toPledged();
        uint256[] memory k = _keys(BANK_KEY, WAREHOUSE_KEY);
        for (uint256 j = 0; j < quantities.length; ++j) {
            ICollateralRegistry.Lot memory before = registry.lotOf(lot);
            qty = uint64(_bound(quantities[j], 0, QUANTITY + 1));
            bool valid = qty > 0 && qty <= before.quantity && before.quantity - qty >= before.minQuantity;
            (bool ok,) = address(registry).call(_partialReleaseCall(k, _noncesOf(k), _deadline()));
            vm.assertEq(ok, valid, "accepted iff within the minimum");
            ICollateralRegistry.Lot memory l = registry.lotOf(lot);
            vm.assertEq(uint256(l.quantity) + l.released, QUANTITY, "held + released == pledged");
            vm.assertGe(l.quantity, l.minQuantity, "never below the minimum");
        }
    }

    /// @dev A lot is accepted with 1 to 16 devices, nothing else.
    function testFuzz_registerLot_deviceCount(uint8 count) public {
        count = uint8(_bound(count, 0, 20));
        delete rec.devices;
        for (uint256 i = 0; i < count; ++i) {
            rec.devices.push(keccak256(abi.encode("fuzz device", i)));
        }
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        (bool ok, bytes memory reason) = address(registry).call(_registerLotCall(k, _noncesOf(k), _deadline()));
        vm.assertEq(ok, count >= 1 && count <= 16, "1..16 devices");
        if (!ok) vm.assertEq(reason, _errDevices(count), "reason");
    }

    // ---------------------------------------------------------------- helpers

    /**
     * @dev For a transition one of `party` or the supervision key approves: both keys are accepted on their own
     * (checked by reverting), and every other key, a reused nonce, an expired deadline, a missing or an extra
     * signature and typed data of another chain are refused with nothing changed.
     */
    function _checkSingleApproval(
        function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
        uint256 partyKey,
        uint256 supervisorKey
    ) internal {
        bytes32 before = _snapshot();
        uint256 deadline = _deadline();
        uint256[7] memory others =
            [STRANGER_KEY, ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY, OTHER_BANK_KEY, OTHER_WAREHOUSE_KEY, INSURER_KEY];
        for (uint256 i = 0; i < others.length; ++i) {
            if (others[i] == partyKey) continue;
            uint256[] memory k = _keys(others[i]);
            _refuse(build(k, _noncesOf(k), deadline), _errUnauthorizedSigner(vm.addr(others[i])), "other signer");
        }
        uint256[] memory p = _keys(partyKey);
        uint256[] memory n = _noncesOf(p);
        _refuse(build(p, _replace(n, 0, n[0] + 1), deadline), _errNonce(vm.addr(partyKey), n[0]), "future nonce");
        _refuse(build(p, _replace(n, 0, n[0] - 1), deadline), _errNonce(vm.addr(partyKey), n[0]), "reused nonce");
        _refuse(build(p, n, block.timestamp - 1), _errExpired(block.timestamp - 1), "expired");
        _refuse(build(new uint256[](0), n, deadline), _errCount(1, 1, 0), "no signature");
        _refuse(build(_keys(partyKey, supervisorKey), n, deadline), _errCount(1, 1, 2), "two signatures");
        signChainId = block.chainid + 7;
        (bool ok,) = address(registry).call(build(p, n, deadline));
        vm.assertFalse(ok, "signed for another chain");
        signChainId = 0;
        vm.assertEq(_snapshot(), before, "a refused transition changed state");

        // Either key alone is enough (the supervisor's attempt is rolled back by reverting the outer call).
        _assertAccepted(build(_keys(supervisorKey), _noncesOf(_keys(supervisorKey)), deadline), "supervision key");
        _exec(build(p, n, deadline));
    }

    function _assertAccepted(bytes memory data, string memory what) internal {
        try this.tryAndRevert(data) {}
        catch (bytes memory reason) {
            vm.assertEq(bytes4(reason), bytes4(keccak256("Accepted()")), what);
        }
    }

    error Accepted();

    /// @dev Runs `data` and reverts with Accepted() if it went through, so nothing is kept.
    function tryAndRevert(bytes memory data) external {
        _exec(data);
        revert Accepted();
    }

    function _errCurePeriodTooShort(bytes32 l, uint40 by, uint256 earliest) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(
            ICollateralRegistry.CollateralRegistryCurePeriodTooShort.selector, l, by, earliest
        );
    }

    function _errCureRunning(bytes32 l, uint40 by) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryCurePeriodRunning.selector, l, by);
    }

    function _errMissing(bytes32 l) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryMissingRecord.selector, l);
    }

    function _errQuantity(bytes32 l, uint64 q) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidQuantity.selector, l, q);
    }

    function _errBelowMinimum(bytes32 l, uint64 remaining, uint64 minimum) internal pure returns (bytes memory) {
        return
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryBelowMinimum.selector, l, remaining, minimum);
    }

    function _errDevices(uint256 count) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidDevices.selector, count);
    }

    function _errRole(uint24 org, ICollateralRegistry.Role expected, ICollateralRegistry.Role actual)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryWrongRole.selector, org, expected, actual);
    }
}
