// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CollateralRegistry} from "../../../contracts/CollateralRegistry.sol";
import {ICollateralRegistry} from "../../../contracts/interfaces/ICollateralRegistry.sol";
import {CollateralFixture, SUPERVISOR_KEY} from "../utils/CollateralFixture.sol";

/**
 * @dev Invariant-test handler for {CollateralRegistry}: honest parties drive a few lots through random
 * lifecycle transitions (each signed by exactly the parties DOMAIN.md names), and a forger keeps trying the
 * same transitions with one approval wrong (a signature missing or from someone else, a used nonce, an expired
 * deadline, typed data of another chain).
 *
 * Every action predicts from an independent model whether the registry must accept it, and fails the campaign
 * on a mismatch (`invariant.failOnRevert = true`). The model's status only moves when a fully signed transition
 * was accepted, so the `invariant_*` functions can compare it with the chain. Every accepted approval records
 * `(signer, nonce)`; a nonce seen twice is recorded in {nonceReused}.
 */
contract CollateralRegistryHandler is CollateralFixture {
    uint256 public constant N_LOTS = 5;
    uint256 public constant N_DEVICES = 4;
    uint256 public constant N_REGISTRATIONS = 3;
    uint64 internal constant MAX_STEP = 1_000_000;

    struct Model {
        ICollateralRegistry.Status status;
        ICollateralRegistry.Status frozenFrom;
        uint24 warehouse;
        uint24 bank;
        bytes32 registration;
        bytes32 device;
        uint64 quantity;
        uint64 minQuantity;
        uint64 pledged; // the quantity pledged, plus every later inflow (substitution, top-up)
        uint64 outflow; // every outflow under the pledge (partial releases, substituted goods)
        uint64 released; // partial releases only
        uint256 pledges; // accepted pledges of this lot, ever
        bool substituting;
        ICollateralRegistry.Substitution pending;
    }

    mapping(uint256 i => Model) internal _model;
    mapping(address signer => uint256) public ghostNonce;
    mapping(address signer => mapping(uint256 nonce => bool)) internal _usedNonce;
    bool public nonceReused;
    uint256 public forgedAccepted;
    mapping(bytes32 action => uint256) public calls;

    /// @dev `deployed`: a fresh registry from {newFixtureRegistry} (not here, to keep this contract small).
    constructor(CollateralRegistry deployed) {
        _deployFixture(deployed);
        address[9] memory all = _signers();
        for (uint256 i = 0; i < all.length; ++i) {
            ghostNonce[all[i]] = registry.nonces(all[i]); // proofs of possession at registration
        }
    }

    // ---------------------------------------------------------------- views for the invariants

    function lotId(uint256 i) public pure returns (bytes32) {
        return keccak256(abi.encode("invariant e-receipt", i));
    }

    function registrationId(uint256 r) public pure returns (bytes32) {
        return keccak256(abi.encode("invariant registration", r));
    }

    function registryAddress() external view returns (address) {
        return address(registry);
    }

    function model(uint256 i) external view returns (Model memory) {
        return _model[i];
    }

    function signers() external pure returns (address[9] memory) {
        return _signers();
    }

    function _signers() internal pure returns (address[9] memory) {
        return [
            vm.addr(WAREHOUSE_KEY),
            vm.addr(ENTERPRISE_KEY),
            vm.addr(BANK_KEY),
            vm.addr(OTHER_BANK_KEY),
            vm.addr(OTHER_WAREHOUSE_KEY),
            vm.addr(INSURER_KEY),
            vm.addr(AUDITOR_KEY),
            vm.addr(SUPERVISOR_KEY),
            vm.addr(STRANGER_KEY)
        ];
    }

    // ---------------------------------------------------------------- honest transitions

    function registerLot(uint256 lotSeed, bool secondWarehouse, uint64 quantity, uint8 deviceSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.None));
        if (chosen) _registerLot(i, secondWarehouse, quantity, deviceSeed);
        else _advance(i, lotSeed);
    }

    function verifyLot(uint256 lotSeed, uint64 quantity) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Inbound));
        if (chosen) _verifyLot(i, quantity);
        else _advance(i, lotSeed);
    }

    function pledge(uint256 lotSeed, bool secondBank, uint8 registrationSeed, uint64 minimum) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Verified));
        if (chosen) _pledge(i, secondBank, registrationSeed, minimum);
        else _advance(i, lotSeed);
    }

    function partialRelease(uint256 lotSeed, uint64 quantity) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged));
        if (chosen) _partialRelease(i, quantity);
        else _advance(i, lotSeed);
    }

    function substituteIn(uint256 lotSeed, uint64 quantityIn, uint64 quantityOut) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged));
        if (chosen) _substituteIn(i, quantityIn, quantityOut);
        else _advance(i, lotSeed);
    }

    function substituteOut(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged));
        if (chosen) _substituteOut(i);
        else _advance(i, lotSeed);
    }

    function marginCall(uint256 lotSeed, bool bySupervisor) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged));
        if (chosen) _marginCall(i, bySupervisor);
        else _advance(i, lotSeed);
    }

    function cureWithGoods(uint256 lotSeed, uint64 quantity) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.MarginCall));
        if (chosen) _cureWithGoods(i, quantity);
        else _advance(i, lotSeed);
    }

    function cureWithCash(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.MarginCall));
        if (chosen) _cureWithCash(i);
        else _advance(i, lotSeed);
    }

    function freeze(uint256 lotSeed, bool bySupervisor) external {
        (uint256 i, bool chosen) =
            _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged) | _mask(ICollateralRegistry.Status.MarginCall));
        if (chosen) _freeze(i, bySupervisor);
        else _advance(i, lotSeed);
    }

    function unfreeze(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Frozen));
        if (chosen) _unfreeze(i);
        else _advance(i, lotSeed);
    }

    function declareDefault(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(
            lotSeed,
            _mask(ICollateralRegistry.Status.Pledged) | _mask(ICollateralRegistry.Status.MarginCall)
                | _mask(ICollateralRegistry.Status.Frozen)
        );
        if (chosen) _declareDefault(i);
        else _advance(i, lotSeed);
    }

    /// @dev The cure period of a margin call runs out (time moves past it), then the supervision key defaults the lot.
    function defaultUncured(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.MarginCall));
        if (chosen) _defaultUncured(i);
        else _advance(i, lotSeed);
    }

    function enforce(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(lotSeed, _mask(ICollateralRegistry.Status.Defaulted));
        if (chosen) _enforce(i);
        else _advance(i, lotSeed);
    }

    function release(uint256 lotSeed) external {
        (uint256 i, bool chosen) =
            _select(lotSeed, _mask(ICollateralRegistry.Status.Pledged) | _mask(ICollateralRegistry.Status.MarginCall));
        if (chosen) _release(i);
        else _advance(i, lotSeed);
    }

    function close(uint256 lotSeed) external {
        (uint256 i, bool chosen) = _select(
            lotSeed,
            _mask(ICollateralRegistry.Status.Inbound) | _mask(ICollateralRegistry.Status.Verified)
                | _mask(ICollateralRegistry.Status.Released) | _mask(ICollateralRegistry.Status.Enforcement)
        );
        if (chosen) _close(i);
        else _advance(i, lotSeed);
    }

    /**
     * @dev Moves lot `i` one honest step along its lifecycle (used when no lot is where an action needs one,
     * so the campaign reaches the later states instead of piling up refusals).
     */
    function _advance(uint256 i, uint256 seed) internal {
        ICollateralRegistry.Status s = _model[i].status;
        if (s == ICollateralRegistry.Status.None) {
            _registerLot(i, seed % 2 == 0, uint64(seed >> 8), uint8(seed >> 80));
        } else if (s == ICollateralRegistry.Status.Inbound) {
            _verifyLot(i, uint64(seed >> 8));
        } else if (s == ICollateralRegistry.Status.Verified) {
            _pledge(i, seed % 2 == 0, uint8(seed >> 8), uint64(seed >> 16));
        } else if (s == ICollateralRegistry.Status.Pledged) {
            uint256 step = (seed >> 8) % 4;
            if (step == 0) _partialRelease(i, 1);
            else if (step == 1) _marginCall(i, seed % 2 == 0);
            else if (step == 2) _freeze(i, seed % 2 == 0);
            else _substituteIn(i, uint64(seed >> 16), uint64(seed >> 80));
        } else if (s == ICollateralRegistry.Status.MarginCall) {
            _cureWithCash(i);
        } else if (s == ICollateralRegistry.Status.Frozen) {
            _unfreeze(i);
        } else if (s == ICollateralRegistry.Status.Defaulted) {
            _enforce(i);
        } else if (s != ICollateralRegistry.Status.Closed) {
            _close(i);
        }
    }

    function _registerLot(uint256 i, bool secondWarehouse, uint64 quantity, uint8 deviceSeed) internal {
        Model storage m = _model[i];
        rec.warehouse = secondWarehouse ? otherWarehouse : warehouse;
        rec.quantity = uint64(_bound(quantity, 1, MAX_STEP));
        bytes32 device = keccak256(abi.encode("invariant device", deviceSeed % N_DEVICES));
        delete rec.devices;
        rec.devices.push(device);
        bool ok = m.status == ICollateralRegistry.Status.None && !_deviceBusy(device);
        if (_submit(_registerLotCall, _keys(_warehouseKey(rec.warehouse)), ok, "registerLot")) {
            (m.status, m.warehouse, m.device, m.quantity) =
            (ICollateralRegistry.Status.Inbound, rec.warehouse, device, rec.quantity);
        }
    }

    function _verifyLot(uint256 i, uint64 quantity) internal {
        Model storage m = _model[i];
        qty = uint64(_bound(quantity, 1, MAX_STEP));
        bool ok = m.status == ICollateralRegistry.Status.Inbound;
        if (_submit(_verifyLotCall, _keys(_warehouseKey(m.warehouse), ENTERPRISE_KEY), ok, "verifyLot")) {
            (m.status, m.quantity) = (ICollateralRegistry.Status.Verified, qty);
        }
    }

    function _pledge(uint256 i, bool secondBank, uint8 registrationSeed, uint64 minimum) internal {
        Model storage m = _model[i];
        bytes32 registration = registrationId(registrationSeed % N_REGISTRATIONS);
        uint24 b = secondBank ? otherBank : bank;
        terms = ICollateralRegistry.PledgeTerms(
            b, registration, keccak256("invariant terms"), m.quantity, uint64(_bound(minimum, 0, m.quantity))
        );
        bool ok = m.status == ICollateralRegistry.Status.Verified && !_registrationBusy(registration);
        uint256[] memory keys = _keys(ENTERPRISE_KEY, _bankKey(b), _warehouseKey(m.warehouse));
        if (_submit(_pledgeCall, keys, ok, "pledge")) {
            (m.status, m.bank, m.registration, m.minQuantity) =
            (ICollateralRegistry.Status.Pledged, b, registration, terms.minQuantity);
            m.pledged = m.quantity;
            ++m.pledges;
        }
    }

    function _partialRelease(uint256 i, uint64 quantity) internal {
        Model storage m = _model[i];
        qty = uint64(_bound(quantity, 1, m.quantity + 1));
        bool ok =
            m.status == ICollateralRegistry.Status.Pledged && qty <= m.quantity && m.quantity - qty >= m.minQuantity;
        if (_submit(_partialReleaseCall, _bankAndWarehouse(m), ok, "partialRelease")) {
            m.quantity -= qty;
            m.outflow += qty;
            m.released += qty;
        }
    }

    function _substituteIn(uint256 i, uint64 quantityIn, uint64 quantityOut) internal {
        Model storage m = _model[i];
        sub.quantityIn = uint64(_bound(quantityIn, 1, MAX_STEP));
        sub.quantityOut = uint64(_bound(quantityOut, 1, m.quantity + sub.quantityIn));
        sub.goods = keccak256(abi.encode("substitute goods", quantityIn));
        sub.assay = keccak256(abi.encode("substitute assay", quantityIn));
        bool ok = m.status == ICollateralRegistry.Status.Pledged && !m.substituting;
        uint256[] memory keys = _keys(ENTERPRISE_KEY, _warehouseKey(m.warehouse));
        if (_submit(_substituteInCall, keys, ok, "substituteIn")) {
            m.quantity += sub.quantityIn;
            m.pledged += sub.quantityIn;
            m.substituting = true;
            m.pending = sub;
        }
    }

    function _substituteOut(uint256 i) internal {
        Model storage m = _model[i];
        sub = m.pending;
        bool ok = m.status == ICollateralRegistry.Status.Pledged && m.substituting && m.quantity >= sub.quantityOut
            && m.quantity - sub.quantityOut >= m.minQuantity;
        if (_submit(_substituteOutCall, _bankAndWarehouse(m), ok, "substituteOut")) {
            m.quantity -= sub.quantityOut;
            m.outflow += sub.quantityOut;
            m.substituting = false;
        }
    }

    function _marginCall(uint256 i, bool bySupervisor) internal {
        Model storage m = _model[i];
        ref = keccak256("LTV above the warning line");
        bool ok = m.status == ICollateralRegistry.Status.Pledged;
        uint256 key = bySupervisor ? SUPERVISOR_KEY : _bankKey(m.bank);
        if (_submit(_marginCallCall, _keys(key), ok, "marginCall")) m.status = ICollateralRegistry.Status.MarginCall;
    }

    function _cureWithGoods(uint256 i, uint64 quantity) internal {
        Model storage m = _model[i];
        qty = uint64(_bound(quantity, 1, MAX_STEP));
        bool ok = m.status == ICollateralRegistry.Status.MarginCall;
        if (_submit(_cureWithGoodsCall, _keys(_warehouseKey(m.warehouse)), ok, "cureWithGoods")) {
            m.status = ICollateralRegistry.Status.Pledged;
            m.quantity += qty;
            m.pledged += qty;
        }
    }

    function _cureWithCash(uint256 i) internal {
        Model storage m = _model[i];
        ref = keccak256("repayment");
        bool ok = m.status == ICollateralRegistry.Status.MarginCall;
        if (_submit(_cureWithCashCall, _keys(_bankKey(m.bank)), ok, "cureWithCash")) {
            m.status = ICollateralRegistry.Status.Pledged;
        }
    }

    function _freeze(uint256 i, bool bySupervisor) internal {
        Model storage m = _model[i];
        ref = keccak256("weight drop");
        bool ok = m.status == ICollateralRegistry.Status.Pledged || m.status == ICollateralRegistry.Status.MarginCall;
        uint256 key = bySupervisor ? SUPERVISOR_KEY : _warehouseKey(m.warehouse);
        if (_submit(_freezeCall, _keys(key), ok, "freeze")) {
            (m.frozenFrom, m.status) = (m.status, ICollateralRegistry.Status.Frozen);
        }
    }

    function _unfreeze(uint256 i) internal {
        Model storage m = _model[i];
        bool ok = m.status == ICollateralRegistry.Status.Frozen;
        if (_submit(_unfreezeCall, _bankAndWarehouse(m), ok, "unfreeze")) {
            (m.status, m.frozenFrom) = (m.frozenFrom, ICollateralRegistry.Status.None);
        }
    }

    function _declareDefault(uint256 i) internal {
        Model storage m = _model[i];
        ref = keccak256("loan default");
        bool ok = m.status == ICollateralRegistry.Status.Pledged || m.status == ICollateralRegistry.Status.MarginCall
            || m.status == ICollateralRegistry.Status.Frozen;
        if (_submit(_defaultCall, _keys(_bankKey(m.bank)), ok, "declareDefault")) {
            (m.status, m.frozenFrom) = (ICollateralRegistry.Status.Defaulted, ICollateralRegistry.Status.None);
        }
    }

    function _defaultUncured(uint256 i) internal {
        Model storage m = _model[i];
        ref = keccak256("margin call uncured");
        vm.warp(block.timestamp + 1 days + 1); // past any cure deadline set so far (calls give a day)
        bool ok = m.status == ICollateralRegistry.Status.MarginCall;
        if (_submit(_defaultUncuredCall, _keys(SUPERVISOR_KEY), ok, "defaultUncured")) {
            m.status = ICollateralRegistry.Status.Defaulted;
        }
    }

    function _enforce(uint256 i) internal {
        Model storage m = _model[i];
        bool ok = m.status == ICollateralRegistry.Status.Defaulted;
        if (_submit(_enforceCall, _bankAndWarehouse(m), ok, "enforce")) {
            m.status = ICollateralRegistry.Status.Enforcement;
        }
    }

    function _release(uint256 i) internal {
        Model storage m = _model[i];
        qty = m.quantity;
        bool ok = m.status == ICollateralRegistry.Status.Pledged || m.status == ICollateralRegistry.Status.MarginCall;
        if (_submit(_releaseCall, _bankAndWarehouse(m), ok, "release")) {
            m.status = ICollateralRegistry.Status.Released;
            m.substituting = false;
        }
    }

    function _close(uint256 i) internal {
        Model storage m = _model[i];
        bool unpledged =
            m.status == ICollateralRegistry.Status.Inbound || m.status == ICollateralRegistry.Status.Verified;
        bool ended =
            m.status == ICollateralRegistry.Status.Released || m.status == ICollateralRegistry.Status.Enforcement;
        bool done = unpledged
            ? _submit(_closeCall, _keys(_warehouseKey(m.warehouse)), true, "close")
            : _submit(_closePledgedCall, _bankAndWarehouse(m), ended, "close");
        if (done) {
            m.status = ICollateralRegistry.Status.Closed;
            m.substituting = false;
        }
    }

    // ---------------------------------------------------------------- forged transitions

    /**
     * @dev The transition `which` on a lot, signed by its parties but with one approval wrong (`mode`): the last
     * signature missing, a signature from a stranger / another bank / the enterprise instead of party `j`, party
     * `j`'s nonce already used, the deadline passed, or typed data of another chain id. Always refused, and
     * nothing changes.
     */
    function forge(uint256 lotSeed, uint8 which, uint8 mode, uint8 j) external {
        (uint256 i,) = _select(lotSeed, type(uint256).max);
        Model storage m = _model[i];
        (
            function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
            uint256[] memory keys
        ) = _honestFor(m, which);
        uint256[] memory n = _noncesOf(keys);
        uint256 deadline = _deadline();
        j = uint8(j % keys.length);
        mode %= 6;
        if (mode == 0) {
            keys = _without(keys, keys.length - 1);
        } else if (mode <= 2) {
            uint256 wrong = mode == 1 ? STRANGER_KEY : (keys[j] == OTHER_BANK_KEY ? BANK_KEY : OTHER_BANK_KEY);
            keys = _replace(keys, j, wrong);
        } else if (mode == 3) {
            n = _replace(n, j, n[j] == 0 ? 1 : n[j] - 1); // a used nonce (or, for a fresh key, one not yet due)
        } else if (mode == 4) {
            deadline = block.timestamp - 1;
        } else {
            signChainId = block.chainid + 1;
        }
        bytes memory data = build(keys, n, deadline);
        signChainId = 0;

        bytes32 before = _snapshot();
        (bool ok,) = address(registry).call(data);
        if (ok) ++forgedAccepted;
        vm.assertFalse(ok, "forged transition accepted");
        vm.assertEq(_snapshot(), before, "forged transition changed state");
        ++calls["forge"];
    }

    /**
     * @dev A transition the lot's status allows (picked by `seed` among them), with parameters the model
     * accepts, and the keys of the parties that must sign it: forging it fails only because of the forgery.
     */
    function _honestFor(Model storage m, uint256 seed)
        internal
        returns (
            function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
            uint256[] memory keys
        )
    {
        uint256 w = _warehouseKey(m.warehouse == 0 ? warehouse : m.warehouse);
        uint256 b = _bankKey(m.bank == 0 ? bank : m.bank);
        ICollateralRegistry.Status s = m.status;
        qty = m.quantity;
        ref = keccak256("forged");
        if (s == ICollateralRegistry.Status.Inbound) return (_verifyLotCall, _keys(w, ENTERPRISE_KEY));
        if (s == ICollateralRegistry.Status.Verified) {
            terms = ICollateralRegistry.PledgeTerms(bank, _freeRegistration(), keccak256("t"), m.quantity, 0);
            return (_pledgeCall, _keys(ENTERPRISE_KEY, BANK_KEY, w));
        }
        if (s == ICollateralRegistry.Status.Pledged) {
            if (seed % 3 == 0 && m.quantity > m.minQuantity) {
                qty = 1;
                return (_partialReleaseCall, _keys(b, w));
            }
            return seed % 3 == 1 ? (_defaultCall, _keys(b)) : (_releaseCall, _keys(b, w));
        }
        if (s == ICollateralRegistry.Status.MarginCall) {
            return seed % 2 == 0 ? (_cureWithCashCall, _keys(b)) : (_releaseCall, _keys(b, w));
        }
        if (s == ICollateralRegistry.Status.Frozen) return (_unfreezeCall, _keys(b, w));
        if (s == ICollateralRegistry.Status.Defaulted) return (_enforceCall, _keys(b, w));
        if (s == ICollateralRegistry.Status.Released || s == ICollateralRegistry.Status.Enforcement) {
            return (_closePledgedCall, _keys(b, w));
        }
        // No lot (or a closed one): its registration.
        rec.warehouse = warehouse;
        delete rec.devices;
        rec.devices.push(keccak256(abi.encode("forged device", seed)));
        return (_registerLotCall, _keys(WAREHOUSE_KEY));
    }

    function _freeRegistration() internal view returns (bytes32) {
        for (uint256 r = 0; r < N_REGISTRATIONS; ++r) {
            if (!_registrationBusy(registrationId(r))) return registrationId(r);
        }
        return keccak256("a registration number nobody uses");
    }

    // ---------------------------------------------------------------- internals

    /**
     * @dev A lot for an action allowed in the `allowed` statuses: one time in eight `lotSeed % N_LOTS` whatever
     * its status (`chosen`, so refusals are exercised), otherwise the first lot from there on whose model status
     * allows the action (`chosen`), or, if none does, `lotSeed % N_LOTS` not chosen (the caller advances it).
     */
    function _select(uint256 lotSeed, uint256 allowed) internal returns (uint256 i, bool chosen) {
        i = lotSeed % N_LOTS;
        chosen = uint256(keccak256(abi.encode(lotSeed))) % 8 == 0;
        if (!chosen) {
            for (uint256 k = 0; k < N_LOTS; ++k) {
                uint256 candidate = (i + k) % N_LOTS;
                if (_mask(_model[candidate].status) & allowed != 0) {
                    (i, chosen) = (candidate, true);
                    break;
                }
            }
        }
        lot = lotId(i);
    }

    function _mask(ICollateralRegistry.Status s) internal pure returns (uint256) {
        return 1 << uint8(s);
    }

    function _warehouseKey(uint24 org) internal view returns (uint256) {
        return org == otherWarehouse ? OTHER_WAREHOUSE_KEY : WAREHOUSE_KEY;
    }

    function _bankKey(uint24 org) internal view returns (uint256) {
        return org == otherBank ? OTHER_BANK_KEY : BANK_KEY;
    }

    function _bankAndWarehouse(Model storage m) internal view returns (uint256[] memory) {
        return _keys(_bankKey(m.bank), _warehouseKey(m.warehouse));
    }

    function _deviceBusy(bytes32 device) internal view returns (bool) {
        for (uint256 k = 0; k < N_LOTS; ++k) {
            Model storage other = _model[k];
            if (other.device == device && other.status != ICollateralRegistry.Status.Closed) return true;
        }
        return false;
    }

    function _registrationBusy(bytes32 registration) internal view returns (bool) {
        for (uint256 k = 0; k < N_LOTS; ++k) {
            Model storage other = _model[k];
            if (other.registration == registration && _live(other.status)) return true;
        }
        return false;
    }

    function _live(ICollateralRegistry.Status s) internal pure returns (bool) {
        return s >= ICollateralRegistry.Status.Pledged && s <= ICollateralRegistry.Status.Enforcement;
    }

    /**
     * @dev Signs with `keys` and their current nonces and submits; checks the outcome against `expected`. On
     * success records each signer's nonce as used (flagging a reuse); on refusal checks nothing changed.
     */
    function _submit(
        function(uint256[] memory, uint256[] memory, uint256) internal view returns (bytes memory) build,
        uint256[] memory keys,
        bool expected,
        bytes32 action
    ) internal returns (bool ok) {
        uint256[] memory n = _noncesOf(keys);
        bytes memory data = build(keys, n, _deadline());
        bytes32 before = _snapshot();
        (ok,) = address(registry).call(data);
        vm.assertEq(ok, expected, string.concat(string(abi.encodePacked(action)), ": outcome differs from the model"));
        if (!ok) {
            vm.assertEq(_snapshot(), before, "refused transition changed state");
            ++calls[keccak256(abi.encodePacked(action, " (refused)"))];
            return false;
        }
        for (uint256 k = 0; k < keys.length; ++k) {
            address signer = vm.addr(keys[k]);
            if (_usedNonce[signer][n[k]]) nonceReused = true;
            _usedNonce[signer][n[k]] = true;
            ++ghostNonce[signer];
            vm.assertEq(registry.nonces(signer), ghostNonce[signer], "nonce advanced by one");
        }
        ++calls[action];
    }
}
