// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {
    IAccessControlDefaultAdminRules
} from "@openzeppelin/contracts/access/extensions/IAccessControlDefaultAdminRules.sol";
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

/**
 * @dev One test per fraud and failure case of DOMAIN.md that the contract itself must stop (cases 1, 2, 5, 6,
 * 7, 8, 14, 15, 16). The others are off-chain: evidence keys (3), sequence numbers and withheld data (9-11),
 * encodings (13), the single on-chain root (12, ReadingAnchor) and price feeds (8, `ledger.valuation`); case 4
 * (right weight, wrong goods) is covered by the assay record a lot needs before it can be pledged.
 */
contract CollateralRegistryFraudTest is CollateralFixture {
    function setUp() public {
        _deployFixture(newFixtureRegistry());
    }

    ICollateralRegistry.Status internal constant PLEDGED = ICollateralRegistry.Status.Pledged;
    ICollateralRegistry.Status internal constant FROZEN = ICollateralRegistry.Status.Frozen;
    ICollateralRegistry.Status internal constant MARGIN_CALL = ICollateralRegistry.Status.MarginCall;
    ICollateralRegistry.Status internal constant DEFAULTED = ICollateralRegistry.Status.Defaulted;

    bytes32 internal constant LOT_B = keccak256("e-receipt:WH1-2025-0002");

    /// @dev Registers and verifies a second lot with its own receipt and devices (same goods owner).
    function _secondLot(uint256 warehouseKey, uint24 warehouseOrg, bytes32 device) internal {
        lot = LOT_B;
        rec.warehouse = warehouseOrg;
        delete rec.devices;
        rec.devices.push(device);
        _run(_registerLotCall, _keys(warehouseKey));
        qty = QUANTITY;
        _run(_verifyLotCall, _keys(warehouseKey, ENTERPRISE_KEY));
    }

    function _status(bytes32 l) internal view returns (uint256) {
        return uint256(registry.lotOf(l).status);
    }

    /**
     * Case 1: the same lot pledged twice, in the same contract or through a registration number already in use
     * (the Qingdao fraud pledged the same metal to many banks). A lot has one status, so a second pledge of it
     * finds it Pledged; and a movable-property registration number may back only one live pledge, so another
     * lot cannot be pledged under it until that pledge is over.
     */
    function test_fraudCase01_sameLotPledgedTwice() public {
        bytes32 registration = terms.registration;
        _toPledged();

        // The same lot again, to another bank.
        terms.bank = otherBank;
        uint256[] memory k = _keys(ENTERPRISE_KEY, OTHER_BANK_KEY, WAREHOUSE_KEY);
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), _errStatus(lot, PLEDGED), "second pledge of the lot");

        // Another lot under the registration number of the live pledge.
        bytes32 first = lot;
        _secondLot(WAREHOUSE_KEY, warehouse, keccak256("wh1:scale-22"));
        bytes memory inUse = abi.encodeWithSelector(
            ICollateralRegistry.CollateralRegistryRegistrationInUse.selector, registration, first
        );
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), inUse, "registration number of a live pledge");

        // Still in use while the first pledge is frozen or in default.
        lot = first;
        _run(_freezeCall, _keys(SUPERVISOR_KEY));
        _run(_defaultCall, _keys(BANK_KEY));
        lot = LOT_B;
        _refuse(_pledgeCall(k, _noncesOf(k), _deadline()), inUse, "registration of a defaulted pledge");
        vm.assertEq(registry.lotOfRegistration(registration), first, "the first lot holds it");
        vm.assertEq(_status(LOT_B), uint256(ICollateralRegistry.Status.Verified), "second lot not pledged");
    }

    /**
     * Case 2: two receipts for one physical stock. On chain a lot *is* its electronic warehouse receipt (the lot
     * id is the receipt code's hash), so a receipt cannot be registered twice; and the devices that weigh and
     * count a stock supervise one unclosed lot at a time, so a second receipt for the same stock, by the same
     * or another warehouse, is refused as long as the first lot is not closed.
     */
    function test_fraudCase02_twoReceiptsForOneStock() public {
        _toPledged();
        bytes32 first = lot;
        bytes32 scale = rec.devices[0];
        uint256[] memory k = _keys(WAREHOUSE_KEY);
        _refuse(
            _registerLotCall(k, _noncesOf(k), _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryLotExists.selector, first),
            "the same receipt twice"
        );

        lot = LOT_B;
        delete rec.devices;
        rec.devices.push(keccak256("wh1:camera-7"));
        rec.devices.push(scale);
        bytes memory scaleInUse =
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryDeviceInUse.selector, scale, first);
        _refuse(_registerLotCall(k, _noncesOf(k), _deadline()), scaleInUse, "second receipt, same scale");
        rec.warehouse = otherWarehouse;
        uint256[] memory other = _keys(OTHER_WAREHOUSE_KEY);
        _refuse(_registerLotCall(other, _noncesOf(other), _deadline()), scaleInUse, "another warehouse, same scale");
        vm.assertEq(_status(LOT_B), 0, "no second lot");
        vm.assertEq(registry.lotOfDevice(scale), first, "the scale supervises the first lot");
    }

    /**
     * Case 5: weight drop, geofence exit or RFID loss without a release instruction → Frozen. Detection happens
     * off chain (supervision rules on signed readings); the contract guarantees that the system's supervision
     * key or the warehouse alone can freeze a pledged lot at once, that nothing leaves a frozen lot, and that
     * only the bank and the warehouse together can clear the alert.
     */
    function test_fraudCase05_weightDropWithoutInstructionFreezes() public {
        _toPledged();
        ref = keccak256("alert: load cell wh1:scale-01 -12% without instruction");
        vm.expectEmit(true, true, true, true, address(registry));
        emit ICollateralRegistry.LotFrozen(lot, vm.addr(SUPERVISOR_KEY), ref);
        _run(_freezeCall, _keys(SUPERVISOR_KEY));
        vm.assertEq(_status(lot), uint256(FROZEN), "frozen by the supervision key");

        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        qty = 100;
        _refuse(_partialReleaseCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, FROZEN), "partial release");
        qty = QUANTITY;
        _refuse(_releaseCall(bw, _noncesOf(bw), _deadline()), _errStatus(lot, FROZEN), "release");
        uint256[] memory ew = _keys(ENTERPRISE_KEY, WAREHOUSE_KEY);
        _refuse(_substituteInCall(ew, _noncesOf(ew), _deadline()), _errStatus(lot, FROZEN), "substitution");

        // Nobody clears it alone: not the warehouse, the enterprise, the supervision key or the bank.
        uint256[4] memory alone = [WAREHOUSE_KEY, ENTERPRISE_KEY, SUPERVISOR_KEY, BANK_KEY];
        for (uint256 i = 0; i < alone.length; ++i) {
            uint256[] memory k = _keys(alone[i]);
            _refuse(_unfreezeCall(k, _noncesOf(k), _deadline()), _errCount(2, 1, 1), "one party unfreezes");
        }
        uint256[] memory wrongPair = _keys(BANK_KEY, SUPERVISOR_KEY);
        _refuse(
            _unfreezeCall(wrongPair, _noncesOf(bw), _deadline()),
            _errApproval(1, vm.addr(WAREHOUSE_KEY)),
            "bank and supervision key"
        );
        uint256[] memory enterpriseWarehouse = _keys(ENTERPRISE_KEY, WAREHOUSE_KEY);
        _refuse(
            _unfreezeCall(enterpriseWarehouse, _noncesOf(bw), _deadline()),
            _errApproval(0, vm.addr(BANK_KEY)),
            "enterprise and warehouse"
        );
        _run(_unfreezeCall, bw);
        vm.assertEq(_status(lot), uint256(PLEDGED), "cleared by bank and warehouse together");

        // A geofence exit reported by the warehouse freezes it just as well.
        ref = keccak256("alert: UWB tag left geofence");
        _run(_freezeCall, _keys(WAREHOUSE_KEY));
        vm.assertEq(_status(lot), uint256(FROZEN), "frozen by the warehouse");
    }

    /**
     * Case 6: release by the enterprise alone, the warehouse alone or a different bank; release of more than
     * repaid. Releases need the lot's bank and its warehouse; the bank signs the exact quantity, so nobody can
     * send more out under its signature, and a full release must name all the lot holds.
     */
    function test_fraudCase06_releaseByWrongParties() public {
        _toPledged();
        qty = QUANTITY;
        uint256[] memory n = _noncesOf(_keys(BANK_KEY, WAREHOUSE_KEY));

        _refuse(_releaseCall(_keys(ENTERPRISE_KEY), n, _deadline()), _errCount(2, 2, 1), "enterprise alone");
        _refuse(_releaseCall(_keys(WAREHOUSE_KEY), n, _deadline()), _errCount(2, 2, 1), "warehouse alone");
        _refuse(
            _releaseCall(_keys(ENTERPRISE_KEY, WAREHOUSE_KEY), n, _deadline()),
            _errApproval(0, vm.addr(BANK_KEY)),
            "enterprise and warehouse"
        );
        _refuse(
            _releaseCall(
                _keys(OTHER_BANK_KEY, WAREHOUSE_KEY), _noncesOf(_keys(OTHER_BANK_KEY, WAREHOUSE_KEY)), _deadline()
            ),
            _errApproval(0, vm.addr(BANK_KEY)),
            "a different bank"
        );

        // The bank instructs 1,000 to go out (a partial repayment); more cannot go out under that signature.
        qty = 1_000;
        bytes memory instructed = _partialReleaseCall(_keys(BANK_KEY, WAREHOUSE_KEY), n, _deadline());
        bytes memory inflated = _withQuantity(instructed, 4_000);
        _refuse(inflated, _errApproval(0, vm.addr(BANK_KEY)), "more than the bank signed");
        _exec(instructed);
        vm.assertEq(uint256(registry.lotOf(lot).released), 1_000, "exactly what the bank signed");

        // A release must name all the lot still holds.
        n = _noncesOf(_keys(BANK_KEY, WAREHOUSE_KEY));
        qty = QUANTITY;
        _refuse(
            _releaseCall(_keys(BANK_KEY, WAREHOUSE_KEY), n, _deadline()),
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryInvalidQuantity.selector, lot, QUANTITY),
            "release of more than the lot holds"
        );
        vm.assertEq(_status(lot), uint256(PLEDGED), "still pledged");
    }

    /// @dev `data` (a partialRelease call) with its quantity argument replaced: the signatures stay as they were.
    function _withQuantity(bytes memory data, uint64 quantity) internal pure returns (bytes memory out) {
        out = bytes.concat(data);
        assembly ("memory-safe") {
            mstore(add(out, add(0x20, 0x24)), quantity) // selector, lot, then quantity
        }
    }

    /**
     * Case 7: many small withdrawals that together go below the minimum control value. Each partial release is
     * checked against the quantity left, not against the withdrawal's size, so the sum of small releases stops
     * at the minimum; a substitution cannot take the lot below it either.
     */
    function test_fraudCase07_smallWithdrawalsBelowMinimum() public {
        _toPledged();
        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        qty = 300;
        uint256 accepted;
        while (registry.lotOf(lot).quantity >= MINIMUM + qty) {
            _run(_partialReleaseCall, bw);
            ++accepted;
        }
        vm.assertEq(accepted, (QUANTITY - MINIMUM) / 300, "withdrawals until the minimum");
        uint64 left = registry.lotOf(lot).quantity;
        _refuse(
            _partialReleaseCall(bw, _noncesOf(bw), _deadline()),
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryBelowMinimum.selector, lot, left - 300, MINIMUM
            ),
            "the withdrawal that would cross the minimum"
        );
        vm.assertEq(uint256(registry.lotOf(lot).released), uint256(QUANTITY - left), "released sum");
        vm.assertGe(registry.lotOf(lot).quantity, MINIMUM, "at or above the minimum");

        // A substitution that takes out more than it brings in, below the minimum, is refused at the outbound.
        sub.quantityIn = 10;
        sub.quantityOut = left + 10 - MINIMUM + 1;
        _run(_substituteInCall, _keys(ENTERPRISE_KEY, WAREHOUSE_KEY));
        _refuse(
            _substituteOutCall(bw, _noncesOf(bw), _deadline()),
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistryBelowMinimum.selector, lot, MINIMUM - 1, MINIMUM
            ),
            "substitution below the minimum"
        );
    }

    /**
     * Case 14: EIP-712 signatures replayed on another chain id or contract, with a reused nonce, or after the
     * deadline. The domain separator binds the chain id and the contract's address (recomputed if the chain id
     * changes, e.g. after a fork), every signer's nonce is used once, and the deadline is checked.
     */
    /**
     * Case 8: a margin call not cured by its deadline. The call records its cure deadline on chain; an uncured call
     * ends in default by the supervision key alone, but only after that deadline, and the key can neither give a
     * cure period shorter than {MIN_CURE_PERIOD} (to default at once) nor default a lot that was cured in time. A
     * goods lot that never comes back leaves the borrower no way to stay Pledged past the deadline.
     */
    function test_fraudCase08_uncuredMarginCall() public {
        _toPledged();
        uint256[] memory s = _keys(SUPERVISOR_KEY);
        uint256 earliest = block.timestamp + registry.MIN_CURE_PERIOD();
        cureBy = uint40(block.timestamp + 1);
        bytes memory tooShort = abi.encodeWithSelector(
            ICollateralRegistry.CollateralRegistryCurePeriodTooShort.selector, lot, cureBy, earliest
        );
        _refuse(_marginCallCall(s, _noncesOf(s), _deadline()), tooShort, "a call that cannot be cured in time");

        cureBy = uint40(block.timestamp + 3 days);
        _run(_marginCallCall, s);
        vm.assertEq(_status(lot), uint256(MARGIN_CALL), "called");
        vm.warp(block.timestamp + 2 days);
        bytes memory running =
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryCurePeriodRunning.selector, lot, cureBy);
        _refuse(_defaultUncuredCall(s, _noncesOf(s), _deadline()), running, "default inside the cure period");

        // The cure period passes with no goods and no cash: the system ends the call in default.
        vm.warp(uint256(cureBy) + 1);
        _run(_defaultUncuredCall, s);
        vm.assertEq(_status(lot), uint256(DEFAULTED), "uncured call ended in default");
        // A cure that comes too late is refused.
        uint256[] memory w = _keys(WAREHOUSE_KEY);
        _refuse(_cureWithGoodsCall(w, _noncesOf(w), _deadline()), _errStatus(lot, DEFAULTED), "late cure");
    }

    function test_fraudCase14_signatureReplay() public {
        _toPledged();
        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        uint256 deadline = _deadline();
        qty = 100;
        bytes memory signed = _partialReleaseCall(bw, _noncesOf(bw), deadline);

        // Another contract with the same organisations and lot: the signature is not valid there.
        CollateralRegistry twin = _twinWithPledgedLot();
        (bool ok, bytes memory reason) = address(twin).call(signed);
        vm.assertFalse(ok, "accepted by another contract");
        vm.assertEq(reason, _errApproval(0, vm.addr(BANK_KEY)), "other contract: reason");

        // Another chain id (a fork of this chain).
        uint256 chainId = block.chainid;
        vm.chainId(chainId + 1);
        _refuse(signed, _errApproval(0, vm.addr(BANK_KEY)), "another chain id");
        vm.chainId(chainId);

        // After the deadline.
        vm.warp(deadline + 1);
        _refuse(signed, _errExpired(deadline), "after the deadline");
        vm.warp(deadline);

        // Once used, the nonces are gone: the same approvals replayed are refused.
        _exec(signed);
        _refuse(signed, _errNonce(vm.addr(BANK_KEY), _noncesOf(bw)[0]), "reused nonce");
        vm.assertEq(uint256(registry.lotOf(lot).released), 100, "released once");
    }

    /// @dev A second registry with the same organisations (same keys, same ids) and the same lot pledged.
    function _twinWithPledgedLot() internal returns (CollateralRegistry twin) {
        CollateralRegistry original = registry;
        uint256[] memory savedQty = new uint256[](1);
        savedQty[0] = qty;
        registry = newFixtureRegistry();
        _registerOrganisation(ICollateralRegistry.Role.Warehouse, WAREHOUSE_KEY, "Warehouse One");
        _registerOrganisation(ICollateralRegistry.Role.Enterprise, ENTERPRISE_KEY, "Copper Trading");
        _registerOrganisation(ICollateralRegistry.Role.Bank, BANK_KEY, "Bank A");
        _toPledged();
        twin = registry;
        registry = original;
        qty = uint64(savedQty[0]);
        vm.assertEq(twin.nonces(vm.addr(BANK_KEY)), registry.nonces(vm.addr(BANK_KEY)), "same nonces on the twin");
    }

    /**
     * Case 15: a single admin key trying to override a multi-party transition. The default admin can give
     * itself every role, register organisations of its own and act as the supervision key, yet it cannot
     * release, unfreeze, re-pledge or close a lot, nor take over a party's signing key; and the default admin
     * role itself only changes hands after a delay.
     */
    function test_fraudCase15_adminKeyCannotOverride() public {
        _toPledged();
        // The admin hands every role it can give to a key it holds, and registers organisations of its own.
        uint256 adminKey = 0xAD;
        address admin = vm.addr(adminKey);
        (bytes32 registrarRole, bytes32 supervisorRole) = (registry.REGISTRAR_ROLE(), registry.SUPERVISOR_ROLE());
        vm.startPrank(ADMIN);
        registry.grantRole(registrarRole, admin);
        registry.grantRole(supervisorRole, admin);
        vm.stopPrank();
        uint24 rogueBank = this.registerFor(admin, ICollateralRegistry.Role.Bank, 0xE011);
        uint24 rogueWarehouse = this.registerFor(admin, ICollateralRegistry.Role.Warehouse, 0xE012);
        vm.assertGt(uint256(rogueWarehouse), uint256(rogueBank), "rogue organisations registered");

        uint256[] memory bw = _keys(BANK_KEY, WAREHOUSE_KEY);
        uint256[] memory n = _noncesOf(bw);
        qty = QUANTITY;
        // Release with the admin's keys, its rogue bank's or its rogue warehouse's: all refused.
        _refuse(_releaseCall(_keys(adminKey, adminKey), n, _deadline()), _errApproval(0, vm.addr(BANK_KEY)), "admin");
        _refuse(_releaseCall(_keys(0xE011, 0xE012), n, _deadline()), _errApproval(0, vm.addr(BANK_KEY)), "rogue orgs");
        _refuse(
            _releaseCall(_keys(BANK_KEY, adminKey), n, _deadline()),
            _errApproval(1, vm.addr(WAREHOUSE_KEY)),
            "admin as warehouse"
        );

        // As a supervisor it may freeze (the system's protective right), but never clear the freeze.
        _run(_freezeCall, _keys(adminKey));
        _refuse(
            _unfreezeCall(_keys(adminKey, adminKey), n, _deadline()), _errApproval(0, vm.addr(BANK_KEY)), "unfreeze"
        );

        // It cannot take over the bank's key: rotation needs the bank's current signer.
        rotateTarget = admin;
        uint256[] memory rotation = _keys(adminKey, adminKey);
        uint256[] memory rn = new uint256[](2);
        rn[0] = registry.nonces(vm.addr(BANK_KEY));
        rn[1] = registry.nonces(admin);
        _refuse(_rotateBankCall(rotation, rn, _deadline()), _errApproval(0, vm.addr(BANK_KEY)), "rotate the bank's key");

        // Calling from the admin account changes nothing either: msg.sender plays no part.
        vm.prank(ADMIN);
        (bool ok,) = address(registry).call(_releaseCall(_keys(adminKey, adminKey), n, _deadline()));
        vm.assertFalse(ok, "release sent by the admin");
        vm.assertEq(uint256(registry.lotOf(lot).status), uint256(FROZEN), "still frozen, still pledged to the bank");
        vm.assertEq(uint256(registry.lotOf(lot).bank), uint256(bank), "bank unchanged");

        // The default admin role is not granted directly, and moves only after the delay.
        bytes32 adminRole = registry.DEFAULT_ADMIN_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControlDefaultAdminRules.AccessControlEnforcedDefaultAdminRules.selector)
        );
        vm.prank(ADMIN);
        registry.grantRole(adminRole, admin);
        vm.prank(ADMIN);
        registry.beginDefaultAdminTransfer(admin);
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControlDefaultAdminRules.AccessControlEnforcedDefaultAdminDelay.selector,
                uint48(block.timestamp + ADMIN_DELAY)
            )
        );
        registry.acceptDefaultAdminTransfer();
    }

    address internal rotateTarget;

    function _rotateBankCall(uint256[] memory keys, uint256[] memory n, uint256 deadline)
        internal
        view
        returns (bytes memory)
    {
        bytes[] memory sigs = _sigs(TD.rotateSigner(bank, rotateTarget, n, deadline), keys);
        return abi.encodeCall(ICollateralRegistry.rotateSigner, (bank, rotateTarget, deadline, n, sigs));
    }

    /// @dev Registers an organisation as `registrar` (called with a prank) for `key`.
    function registerFor(address registrar, ICollateralRegistry.Role role, uint256 key) external returns (uint24) {
        address signer = vm.addr(key);
        uint256[] memory n = new uint256[](1);
        uint256 deadline = _deadline();
        bytes[] memory sigs = _sigs(TD.registerOrganisation(role, signer, "rogue", n, deadline), _keys(key));
        vm.prank(registrar);
        return registry.registerOrganisation(role, signer, "rogue", deadline, n, sigs);
    }

    /**
     * Case 16: a supervisor affiliated with the pledgor. The registrar records affiliations; a warehouse cannot
     * take in goods of an affiliated enterprise, a lot whose warehouse became known as affiliated cannot be
     * pledged, and one key cannot sign for both the warehouse and the enterprise.
     */
    function test_fraudCase16_affiliatedSupervisor() public {
        vm.prank(REGISTRAR);
        registry.setAffiliation(warehouse, enterprise, true);
        bytes memory affiliated =
            abi.encodeWithSelector(ICollateralRegistry.CollateralRegistryAffiliated.selector, warehouse, enterprise);
        uint256[] memory w = _keys(WAREHOUSE_KEY);
        _refuse(_registerLotCall(w, _noncesOf(w), _deadline()), affiliated, "affiliated warehouse takes goods in");

        // An independent warehouse may; the affiliated one may again once the registrar clears the record.
        rec.warehouse = otherWarehouse;
        _run(_registerLotCall, _keys(OTHER_WAREHOUSE_KEY));
        vm.assertEq(_status(lot), uint256(ICollateralRegistry.Status.Inbound), "independent warehouse");

        // The affiliation becomes known after the goods came in: the pledge is refused.
        vm.prank(REGISTRAR);
        registry.setAffiliation(warehouse, enterprise, false);
        _secondLot(WAREHOUSE_KEY, warehouse, keccak256("wh1:scale-31"));
        vm.prank(REGISTRAR);
        registry.setAffiliation(enterprise, warehouse, true);
        terms.registration = keccak256("PBoC registration 2025-0031");
        uint256[] memory ebw = _keys(ENTERPRISE_KEY, BANK_KEY, WAREHOUSE_KEY);
        _refuse(_pledgeCall(ebw, _noncesOf(ebw), _deadline()), affiliated, "pledge with an affiliated warehouse");

        // One key cannot be both the warehouse's and the enterprise's.
        vm.expectRevert(
            abi.encodeWithSelector(
                ICollateralRegistry.CollateralRegistrySignerInUse.selector, vm.addr(WAREHOUSE_KEY), warehouse
            )
        );
        this.registerFor(REGISTRAR, ICollateralRegistry.Role.Enterprise, WAREHOUSE_KEY);
    }
}
