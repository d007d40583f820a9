// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ICollateralRegistry} from "../../contracts/interfaces/ICollateralRegistry.sol";
import {CollateralRegistryHandler} from "./handlers/CollateralRegistryHandler.sol";
import {Assertions} from "./utils/Assertions.sol";
import {newFixtureRegistry} from "./utils/CollateralFixture.sol";

/// @dev Mirrors forge-std's `StdInvariant.FuzzSelector`, read by the invariant fuzzer.
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/**
 * @dev Invariants of {CollateralRegistry} under random sequences of honest and forged lifecycle transitions
 * on a few lots that share devices and registration numbers (see {CollateralRegistryHandler}).
 *
 * hardhat-config lines keep the campaign short (the default is 256 runs x 500 calls).
 */
contract CollateralRegistryInvariantTest is Assertions {
    CollateralRegistryHandler internal handler;
    ICollateralRegistry internal registry;

    function setUp() public {
        handler = new CollateralRegistryHandler(newFixtureRegistry());
        registry = ICollateralRegistry(handler.registryAddress());
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @dev Only the lifecycle actions, not the handler's views.
    function targetSelectors() public view returns (FuzzSelector[] memory selectors) {
        bytes4[] memory fns = new bytes4[](17);
        fns[0] = CollateralRegistryHandler.registerLot.selector;
        fns[1] = CollateralRegistryHandler.verifyLot.selector;
        fns[2] = CollateralRegistryHandler.pledge.selector;
        fns[3] = CollateralRegistryHandler.partialRelease.selector;
        fns[4] = CollateralRegistryHandler.substituteIn.selector;
        fns[5] = CollateralRegistryHandler.substituteOut.selector;
        fns[6] = CollateralRegistryHandler.marginCall.selector;
        fns[7] = CollateralRegistryHandler.cureWithGoods.selector;
        fns[8] = CollateralRegistryHandler.cureWithCash.selector;
        fns[9] = CollateralRegistryHandler.freeze.selector;
        fns[10] = CollateralRegistryHandler.unfreeze.selector;
        fns[11] = CollateralRegistryHandler.declareDefault.selector;
        fns[12] = CollateralRegistryHandler.enforce.selector;
        fns[13] = CollateralRegistryHandler.release.selector;
        fns[14] = CollateralRegistryHandler.close.selector;
        fns[15] = CollateralRegistryHandler.forge.selector;
        fns[16] = CollateralRegistryHandler.defaultUncured.selector;
        selectors = new FuzzSelector[](1);
        selectors[0] = FuzzSelector(address(handler), fns);
    }

    /**
     * @dev At most one live pledge per lot, and per registration number: a lot is pledged at most once in its
     * life, and no two live pledges share a registration number, which the registry reports for the one lot
     * holding it.
     *
     * hardhat-config: invariant.runs = 24
     * hardhat-config: invariant.depth = 48
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_atMostOneLivePledgePerLot() public view {
        for (uint256 i = 0; i < handler.N_LOTS(); ++i) {
            CollateralRegistryHandler.Model memory m = handler.model(i);
            vm.assertLe(m.pledges, 1, "a lot pledged more than once");
            ICollateralRegistry.Lot memory l = registry.lotOf(handler.lotId(i));
            if (_live(l.status)) {
                vm.assertEq(uint256(l.bank), uint256(m.bank), "a live pledge has its one bank");
                vm.assertEq(registry.lotOfRegistration(m.registration), handler.lotId(i), "registration holder");
            }
        }
        for (uint256 r = 0; r < handler.N_REGISTRATIONS(); ++r) {
            bytes32 registration = handler.registrationId(r);
            uint256 live;
            bytes32 holder;
            for (uint256 i = 0; i < handler.N_LOTS(); ++i) {
                if (handler.model(i).registration == registration && _live(registry.lotOf(handler.lotId(i)).status)) {
                    ++live;
                    holder = handler.lotId(i);
                }
            }
            vm.assertLe(live, 1, "a registration number in two live pledges");
            vm.assertEq(registry.lotOfRegistration(registration), holder, "lotOfRegistration");
        }
    }

    /**
     * @dev Released quantity never exceeds what was pledged: what is under control plus what left under the
     * pledge equals what came under it, partial releases are counted exactly, and a live pledge never holds
     * less than its minimum.
     *
     * hardhat-config: invariant.runs = 24
     * hardhat-config: invariant.depth = 48
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_releasedNeverExceedsPledged() public view {
        for (uint256 i = 0; i < handler.N_LOTS(); ++i) {
            CollateralRegistryHandler.Model memory m = handler.model(i);
            ICollateralRegistry.Lot memory l = registry.lotOf(handler.lotId(i));
            vm.assertEq(uint256(l.released), uint256(m.released), "released == partial releases made");
            vm.assertLe(uint256(l.released), uint256(m.pledged), "released <= pledged");
            if (m.pledges == 1) {
                vm.assertEq(uint256(l.quantity) + m.outflow, uint256(m.pledged), "held + out == in");
            } else {
                vm.assertEq(uint256(l.released), 0, "released without a pledge");
            }
            if (_live(l.status)) vm.assertGe(uint256(l.quantity), uint256(l.minQuantity), "below the minimum");
        }
    }

    /**
     * @dev No transition without every required signature: the chain's lots are exactly where the fully signed
     * transitions took them, and no forged transition was ever accepted.
     *
     * hardhat-config: invariant.runs = 24
     * hardhat-config: invariant.depth = 48
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_noTransitionWithoutEveryRequiredSignature() public view {
        vm.assertEq(handler.forgedAccepted(), 0, "a forged transition was accepted");
        for (uint256 i = 0; i < handler.N_LOTS(); ++i) {
            CollateralRegistryHandler.Model memory m = handler.model(i);
            ICollateralRegistry.Lot memory l = registry.lotOf(handler.lotId(i));
            vm.assertEq(uint256(l.status), uint256(m.status), "status");
            vm.assertEq(uint256(l.frozenFrom), uint256(m.frozenFrom), "frozenFrom");
            vm.assertEq(uint256(l.quantity), uint256(m.quantity), "quantity");
            vm.assertEq(uint256(l.bank), uint256(m.bank), "bank");
            vm.assertEq(uint256(l.warehouse), uint256(m.warehouse), "warehouse");
        }
    }

    /**
     * @dev Nonces are never reused: every accepted approval used a (signer, nonce) pair never used before, and
     * each signer's nonce is exactly the number of approvals it gave.
     *
     * hardhat-config: invariant.runs = 24
     * hardhat-config: invariant.depth = 48
     * hardhat-config: invariant.failOnRevert = true
     */
    function invariant_noncesNeverReused() public view {
        vm.assertFalse(handler.nonceReused(), "a nonce was used twice");
        address[9] memory signers = handler.signers();
        for (uint256 k = 0; k < signers.length; ++k) {
            vm.assertEq(registry.nonces(signers[k]), handler.ghostNonce(signers[k]), "nonce == approvals given");
        }
    }

    function _live(ICollateralRegistry.Status s) internal pure returns (bool) {
        return s >= ICollateralRegistry.Status.Pledged && s <= ICollateralRegistry.Status.Enforcement;
    }
}
