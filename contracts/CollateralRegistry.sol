// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {
    AccessControlDefaultAdminRules
} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ICollateralRegistry} from "./interfaces/ICollateralRegistry.sol";

/**
 * @title CollateralRegistry
 * @dev The on-chain record a bank relies on: a goods lot exists, is pledged to it alone, and leaves
 * the warehouse only on its instruction (DOMAIN.md "Lifecycle of a goods lot"; SPEC §8).
 *
 * Every lot transition is authorised by EIP-712 signatures of exactly the parties DOMAIN.md's
 * lifecycle table names, checked in one place ({_requireApprovals}). The typed data binds the chain
 * id and this contract (the EIP-712 domain, OpenZeppelin {EIP712}), every signer's nonce and a
 * deadline. Anyone may submit a fully signed transition (the service's relayer does); `msg.sender`
 * plays no part in it.
 *
 * IMPORTANT: no role can perform or override a transition. The delayed default admin
 * ({AccessControlDefaultAdminRules}) only grants {REGISTRAR_ROLE}, which records organisations (each
 * with its signer's own proof of key possession), affiliations and whether an organisation may be named
 * in new lots, and {SUPERVISOR_ROLE}, the system's supervision key, which may raise the single-party
 * transitions the table gives to "the system": margin call and freeze, and end in default a margin call whose
 * cure period (recorded on chain with the call, at least {MIN_CURE_PERIOD}) is over ({defaultUncured}). Signer rotation needs the
 * organisation's current signer, so no role can swap a party's key.
 *
 * Signatures are verified with {ECDSA-tryRecover} first (3k gas each for the externally owned keys of
 * wallets and HSMs); only when that fails and the expected signer has code is ERC-1271
 * `isValidSignature` tried, as {SignatureChecker-isValidERC1271SignatureNow} does, so contract wallets
 * (a bank's Safe) work without charging every ECDSA signer an EXTCODESIZE. (SignatureChecker itself
 * cannot be imported for paris: in OpenZeppelin 5.4 it pulls in `Bytes`, which uses `mcopy`.)
 * "X or the supervision key" transitions accept an ERC-1271 signature from X and an ECDSA signature
 * from any supervisor.
 *
 * Nonces are per signer address, each used once, in order, like OpenZeppelin {Nonces} (same `nonces`
 * view); but an organisation's current signer keeps its sequence in the organisation's storage slot,
 * next to the address, so a party costs one cold storage slot instead of two (2,100 gas less per
 * signature: a three-party pledge stays under 100k). The sequence moves with the address on rotation.
 *
 * Storage is packed so that a pledge, a release, a freeze or a margin call touches one slot of the
 * lot (see {ICollateralRegistry-Lot}). Uniqueness is kept lazily: `_registrations` and `_devices`
 * remember the last lot that used a registration number or a device, and the claim counts only while
 * that lot is live (pledged) or, for devices, not closed; nothing has to be cleared when a pledge ends.
 *
 * NOTE: a lot is pledged at most once in its life (Released and Enforcement lead only to Closed), which
 * the lazy registration check relies on.
 *
 * NOTE: hashes of identifiers (receipt codes, registration numbers) must be deterministic for uniqueness
 * to hold, so they are not salted: they hide low-entropy identifiers only from a casual reader.
 */
contract CollateralRegistry is ICollateralRegistry, AccessControlDefaultAdminRules, EIP712 {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    bytes32 public constant SUPERVISOR_ROLE = keccak256("SUPERVISOR_ROLE");

    /// @dev Upper bound on the supervising devices of one lot (gas of {registerLot}).
    uint256 public constant MAX_DEVICES = 16;

    /**
     * @dev The shortest cure period a margin call may give. With {defaultUncured} the supervision key can end an
     * uncured call in default; this bounds how fast: the bank always has at least this long to cure with cash
     * (which it alone signs) a call it disagrees with.
     */
    uint256 public constant MIN_CURE_PERIOD = 1 hours;

    bytes32 private constant _REGISTER_ORGANISATION_TYPEHASH =
        keccak256("RegisterOrganisation(uint8 role,address signer,string name,uint256 nonce,uint256 deadline)");
    bytes32 private constant _ROTATE_SIGNER_TYPEHASH =
        keccak256("RotateSigner(uint24 org,address newSigner,uint256 currentNonce,uint256 newNonce,uint256 deadline)");
    bytes32 private constant _REGISTER_LOT_TYPEHASH = keccak256(
        "RegisterLot(bytes32 lot,uint24 warehouse,uint24 enterprise,bytes32 goods,uint64 quantity,bytes8 unit,bytes32[] devices,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _VERIFY_LOT_TYPEHASH = keccak256(
        "VerifyLot(bytes32 lot,bytes32 assay,uint64 quantity,uint256 warehouseNonce,uint256 enterpriseNonce,uint256 deadline)"
    );
    bytes32 private constant _PLEDGE_TYPEHASH = keccak256(
        "Pledge(bytes32 lot,uint24 bank,bytes32 registration,bytes32 terms,uint64 quantity,uint64 minQuantity,uint256 enterpriseNonce,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _PARTIAL_RELEASE_TYPEHASH = keccak256(
        "PartialRelease(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _SUBSTITUTE_IN_TYPEHASH = keccak256(
        "SubstituteIn(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,uint256 enterpriseNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _SUBSTITUTE_OUT_TYPEHASH = keccak256(
        "SubstituteOut(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _MARGIN_CALL_TYPEHASH =
        keccak256("MarginCall(bytes32 lot,bytes32 reason,uint40 cureBy,uint256 nonce,uint256 deadline)");
    bytes32 private constant _CURE_WITH_GOODS_TYPEHASH = keccak256(
        "CureWithGoods(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 private constant _CURE_WITH_CASH_TYPEHASH =
        keccak256("CureWithCash(bytes32 lot,bytes32 payment,uint256 bankNonce,uint256 deadline)");
    bytes32 private constant _FREEZE_TYPEHASH =
        keccak256("Freeze(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)");
    bytes32 private constant _UNFREEZE_TYPEHASH =
        keccak256("Unfreeze(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 private constant _DEFAULT_TYPEHASH =
        keccak256("Default(bytes32 lot,bytes32 reason,uint256 bankNonce,uint256 deadline)");
    bytes32 private constant _DEFAULT_UNCURED_TYPEHASH =
        keccak256("DefaultUncured(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)");
    bytes32 private constant _ENFORCE_TYPEHASH =
        keccak256("Enforce(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 private constant _RELEASE_TYPEHASH =
        keccak256("Release(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 private constant _CLOSE_TYPEHASH = keccak256("Close(bytes32 lot,uint256 warehouseNonce,uint256 deadline)");
    bytes32 private constant _CLOSE_PLEDGED_TYPEHASH =
        keccak256("ClosePledged(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");

    // Status sets as bit masks (bit i = Status(i)).
    uint256 private constant _PLEDGED = 1 << uint8(Status.Pledged);
    uint256 private constant _MARGIN_CALL = 1 << uint8(Status.MarginCall);
    uint256 private constant _FROZEN = 1 << uint8(Status.Frozen);
    uint256 private constant _UNPLEDGED = (1 << uint8(Status.Inbound)) | (1 << uint8(Status.Verified));
    uint256 private constant _PLEDGE_ENDED = (1 << uint8(Status.Released)) | (1 << uint8(Status.Enforcement));

    mapping(uint24 org => Organisation) private _organisations;
    /// @dev Next nonce of accounts that are not an organisation's current signer (see {nonces}).
    mapping(address account => uint64) private _accountNonces;
    mapping(address signer => uint24 org) private _signerOrganisation;
    mapping(uint48 pair => bool) private _affiliated;
    uint24 private _organisationCount;

    mapping(bytes32 lot => Lot) private _lots;
    mapping(bytes32 lot => bytes32 substitutionHash) private _substitutions;
    mapping(bytes32 registration => bytes32 lot) private _registrations;
    mapping(bytes32 device => bytes32 lot) private _devices;

    /**
     * @param adminDelay delay before a new default admin can accept the role (see {AccessControlDefaultAdminRules})
     * @param admin the initial default admin
     * @param registrar gets {REGISTRAR_ROLE}
     * @param supervisor gets {SUPERVISOR_ROLE} (the system's supervision key)
     */
    constructor(uint48 adminDelay, address admin, address registrar, address supervisor)
        AccessControlDefaultAdminRules(adminDelay, admin)
        EIP712("CollateralRegistry", "1")
    {
        _grantRole(REGISTRAR_ROLE, registrar);
        _grantRole(SUPERVISOR_ROLE, supervisor);
    }

    // ------------------------------------------------------------------ organisations

    /// @inheritdoc ICollateralRegistry
    function registerOrganisation(
        Role role,
        address signer,
        string calldata name,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external onlyRole(REGISTRAR_ROLE) returns (uint24 org) {
        if (signer == address(0) || role == Role.None) {
            revert CollateralRegistryInvalidOrganisation(signer, role);
        }
        _requireUnusedSigner(signer);
        bytes memory head = abi.encode(_REGISTER_ORGANISATION_TYPEHASH, role, signer, keccak256(bytes(name)));
        _requireAccountApprovals(head, _accounts(signer, address(0)), deadline, signerNonces, signatures);

        org = ++_organisationCount;
        _organisations[org] = Organisation(signer, role, true, _accountNonces[signer]);
        _signerOrganisation[signer] = org;
        emit OrganisationRegistered(org, role, signer, name);
    }

    /// @inheritdoc ICollateralRegistry
    function rotateSigner(
        uint24 org,
        address newSigner,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Organisation storage o = _requireOrganisation(org);
        if (newSigner == address(0)) revert CollateralRegistryInvalidOrganisation(newSigner, o.role);
        _requireUnusedSigner(newSigner);
        address oldSigner = o.signer;
        bytes memory head = abi.encode(_ROTATE_SIGNER_TYPEHASH, org, newSigner);
        _requireAccountApprovals(head, _accounts(oldSigner, newSigner), deadline, signerNonces, signatures);

        // The nonce sequence stays with the address: the old signer's continues in `_accountNonces`.
        _accountNonces[oldSigner] = o.nonce;
        o.nonce = _accountNonces[newSigner];
        o.signer = newSigner;
        _signerOrganisation[newSigner] = org;
        emit OrganisationSignerRotated(org, oldSigner, newSigner);
    }

    /// @inheritdoc ICollateralRegistry
    function setOrganisationActive(uint24 org, bool active) external onlyRole(REGISTRAR_ROLE) {
        _requireOrganisation(org).active = active;
        emit OrganisationActiveSet(org, active);
    }

    /// @inheritdoc ICollateralRegistry
    function setAffiliation(uint24 orgA, uint24 orgB, bool affiliated) external onlyRole(REGISTRAR_ROLE) {
        _requireOrganisation(orgA);
        _requireOrganisation(orgB);
        if (orgA == orgB) revert CollateralRegistryUnknownOrganisation(orgB);
        _affiliated[_pair(orgA, orgB)] = affiliated;
        emit AffiliationSet(orgA, orgB, affiliated);
    }

    // ------------------------------------------------------------------ lot lifecycle

    /// @inheritdoc ICollateralRegistry
    function registerLot(
        bytes32 lot,
        LotRecord calldata record,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lots[lot];
        if (stored.status != Status.None) revert CollateralRegistryLotExists(lot);
        _requireValidRecord(lot, record);
        _requireApprovals(_registerLotHead(lot, record), _orgs(record.warehouse), deadline, signerNonces, signatures);
        _bindDevices(lot, record.devices);

        stored.warehouse = record.warehouse;
        stored.enterprise = record.enterprise;
        stored.status = Status.Inbound;
        stored.quantity = record.quantity;
        stored.unit = record.unit;
        stored.goods = record.goods;
        emit LotRegistered(
            lot, record.warehouse, record.enterprise, record.goods, record.quantity, record.unit, record.devices
        );
    }

    /// @inheritdoc ICollateralRegistry
    function verifyLot(
        bytes32 lot,
        bytes32 assay,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, 1 << uint8(Status.Inbound));
        _requireRecords(lot, assay, assay);
        _requireQuantity(lot, quantity, quantity);
        bytes memory head = abi.encode(_VERIFY_LOT_TYPEHASH, lot, assay, quantity);
        _requireApprovals(head, _orgs(stored.warehouse, stored.enterprise), deadline, signerNonces, signatures);

        stored.status = Status.Verified;
        stored.quantity = quantity;
        stored.assay = assay;
        emit LotVerified(lot, assay, quantity);
    }

    /// @inheritdoc ICollateralRegistry
    function pledge(
        bytes32 lot,
        PledgeTerms calldata p,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, 1 << uint8(Status.Verified));
        (uint24 bank, bytes32 registration, uint64 quantity, uint64 minQuantity) =
            (p.bank, p.registration, p.quantity, p.minQuantity);
        _requireRecords(lot, registration, p.terms);
        if (quantity != stored.quantity) revert CollateralRegistryInvalidQuantity(lot, quantity);
        if (minQuantity > quantity) revert CollateralRegistryBelowMinimum(lot, quantity, minQuantity);
        _requireFreeRegistration(registration);
        _requireApprovals(
            abi.encode(_PLEDGE_TYPEHASH, lot, p), _pledgeSigners(stored, bank), deadline, signerNonces, signatures
        );

        _registrations[registration] = lot;
        stored.bank = bank;
        stored.status = Status.Pledged;
        stored.minQuantity = minQuantity;
        stored.controlStart = uint40(block.timestamp);
        emit LotPledged(lot, bank, registration, p.terms, quantity, minQuantity, uint40(block.timestamp));
    }

    /// @inheritdoc ICollateralRegistry
    function partialRelease(
        bytes32 lot,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED);
        uint64 held = stored.quantity;
        _requireQuantity(lot, quantity, held);
        uint64 remaining = held - quantity;
        _requireMinimum(lot, stored, remaining);
        bytes memory head = abi.encode(_PARTIAL_RELEASE_TYPEHASH, lot, quantity);
        _requireApprovals(head, _bankAndWarehouse(stored), deadline, signerNonces, signatures);

        stored.quantity = remaining;
        stored.released += quantity;
        emit LotPartiallyReleased(lot, quantity, remaining);
    }

    /// @inheritdoc ICollateralRegistry
    function substituteIn(
        bytes32 lot,
        Substitution calldata s,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED);
        if (_substitutions[lot] != 0) revert CollateralRegistrySubstitutionPending(lot);
        _requireRecords(lot, s.goods, s.assay);
        uint64 quantityIn = s.quantityIn;
        uint64 held = stored.quantity + quantityIn;
        _requireQuantity(lot, quantityIn, quantityIn);
        _requireQuantity(lot, s.quantityOut, held);
        _requireApprovals(
            abi.encode(_SUBSTITUTE_IN_TYPEHASH, lot, s),
            _orgs(stored.enterprise, stored.warehouse),
            deadline,
            signerNonces,
            signatures
        );

        _substitutions[lot] = keccak256(abi.encode(s));
        stored.quantity = held;
        emit SubstitutionGoodsVerified(lot, s.goods, s.assay, quantityIn, s.quantityOut);
    }

    /// @inheritdoc ICollateralRegistry
    function substituteOut(
        bytes32 lot,
        Substitution calldata s,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED);
        bytes32 pending = _substitutions[lot];
        if (pending == 0 || pending != keccak256(abi.encode(s))) revert CollateralRegistryNoSubstitution(lot);
        uint64 quantityOut = s.quantityOut;
        _requireQuantity(lot, quantityOut, stored.quantity);
        uint64 remaining = stored.quantity - quantityOut;
        _requireMinimum(lot, stored, remaining);
        _requireApprovals(
            abi.encode(_SUBSTITUTE_OUT_TYPEHASH, lot, s), _bankAndWarehouse(stored), deadline, signerNonces, signatures
        );

        delete _substitutions[lot];
        stored.quantity = remaining;
        stored.goods = s.goods;
        stored.assay = s.assay;
        emit SubstitutionCompleted(lot, s.goods, s.assay, quantityOut, remaining);
    }

    /// @inheritdoc ICollateralRegistry
    function marginCall(
        bytes32 lot,
        bytes32 reason,
        uint40 cureBy,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED);
        uint256 earliest = block.timestamp + MIN_CURE_PERIOD;
        if (cureBy < earliest) revert CollateralRegistryCurePeriodTooShort(lot, cureBy, earliest);
        bytes memory head = abi.encode(_MARGIN_CALL_TYPEHASH, lot, reason, cureBy);
        address by = _requirePartyOrSupervisor(head, stored.bank, deadline, signerNonces, signatures);

        stored.status = Status.MarginCall;
        stored.cureBy = cureBy;
        emit MarginCalled(lot, by, reason, cureBy);
    }

    /// @inheritdoc ICollateralRegistry
    function cureWithGoods(
        bytes32 lot,
        bytes32 goods,
        bytes32 assay,
        uint64 quantityIn,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _MARGIN_CALL);
        _requireRecords(lot, goods, assay);
        _requireQuantity(lot, quantityIn, quantityIn);
        bytes memory head = abi.encode(_CURE_WITH_GOODS_TYPEHASH, lot, goods, assay, quantityIn);
        _requireApprovals(head, _orgs(stored.warehouse), deadline, signerNonces, signatures);

        stored.status = Status.Pledged;
        stored.quantity += quantityIn;
        stored.goods = goods;
        stored.assay = assay;
        emit MarginCallCuredWithGoods(lot, goods, assay, quantityIn);
    }

    /// @inheritdoc ICollateralRegistry
    function cureWithCash(
        bytes32 lot,
        bytes32 payment,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _MARGIN_CALL);
        _requireRecords(lot, payment, payment);
        bytes memory head = abi.encode(_CURE_WITH_CASH_TYPEHASH, lot, payment);
        _requireApprovals(head, _orgs(stored.bank), deadline, signerNonces, signatures);

        stored.status = Status.Pledged;
        emit MarginCallCuredWithCash(lot, payment);
    }

    /// @inheritdoc ICollateralRegistry
    function freeze(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lots[lot];
        Status status = stored.status;
        _requireStatus(lot, status, _PLEDGED | _MARGIN_CALL);
        bytes memory head = abi.encode(_FREEZE_TYPEHASH, lot, reason);
        address by = _requirePartyOrSupervisor(head, stored.warehouse, deadline, signerNonces, signatures);

        stored.frozenFrom = status;
        stored.status = Status.Frozen;
        emit LotFrozen(lot, by, reason);
    }

    /// @inheritdoc ICollateralRegistry
    function unfreeze(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
        external
    {
        Lot storage stored = _lotIn(lot, _FROZEN);
        bytes memory head = abi.encode(_UNFREEZE_TYPEHASH, lot);
        _requireApprovals(head, _bankAndWarehouse(stored), deadline, signerNonces, signatures);

        Status status = stored.frozenFrom;
        stored.status = status;
        stored.frozenFrom = Status.None;
        emit LotUnfrozen(lot, status);
    }

    /// @inheritdoc ICollateralRegistry
    function declareDefault(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED | _MARGIN_CALL | _FROZEN);
        bytes memory head = abi.encode(_DEFAULT_TYPEHASH, lot, reason);
        _requireApprovals(head, _orgs(stored.bank), deadline, signerNonces, signatures);

        stored.status = Status.Defaulted;
        stored.frozenFrom = Status.None;
        emit LotDefaulted(lot, reason);
    }

    /// @inheritdoc ICollateralRegistry
    function defaultUncured(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _MARGIN_CALL);
        uint40 cureBy = stored.cureBy;
        if (block.timestamp <= cureBy) revert CollateralRegistryCurePeriodRunning(lot, cureBy);
        bytes memory head = abi.encode(_DEFAULT_UNCURED_TYPEHASH, lot, reason);
        // Organisation 0 has no signer, so only a supervision key's signature is accepted.
        _requirePartyOrSupervisor(head, 0, deadline, signerNonces, signatures);

        stored.status = Status.Defaulted;
        emit LotDefaulted(lot, reason);
    }

    /// @inheritdoc ICollateralRegistry
    function enforce(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
        external
    {
        Lot storage stored = _lotIn(lot, 1 << uint8(Status.Defaulted));
        bytes memory head = abi.encode(_ENFORCE_TYPEHASH, lot);
        _requireApprovals(head, _bankAndWarehouse(stored), deadline, signerNonces, signatures);

        stored.status = Status.Enforcement;
        emit LotEnforcementStarted(lot);
    }

    /// @inheritdoc ICollateralRegistry
    function release(
        bytes32 lot,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external {
        Lot storage stored = _lotIn(lot, _PLEDGED | _MARGIN_CALL);
        if (quantity != stored.quantity) revert CollateralRegistryInvalidQuantity(lot, quantity);
        bytes memory head = abi.encode(_RELEASE_TYPEHASH, lot, quantity);
        _requireApprovals(head, _bankAndWarehouse(stored), deadline, signerNonces, signatures);

        stored.status = Status.Released;
        emit LotReleased(lot, quantity);
    }

    /// @inheritdoc ICollateralRegistry
    function close(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
        external
    {
        Lot storage stored = _lots[lot];
        Status status = stored.status;
        _requireStatus(lot, status, _UNPLEDGED | _PLEDGE_ENDED);
        if (status == Status.Inbound || status == Status.Verified) {
            bytes memory head = abi.encode(_CLOSE_TYPEHASH, lot);
            _requireApprovals(head, _orgs(stored.warehouse), deadline, signerNonces, signatures);
        } else {
            bytes memory head = abi.encode(_CLOSE_PLEDGED_TYPEHASH, lot);
            _requireApprovals(head, _bankAndWarehouse(stored), deadline, signerNonces, signatures);
        }

        stored.status = Status.Closed;
        emit LotClosed(lot, status);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ICollateralRegistry
    function organisation(uint24 org) public view virtual returns (Organisation memory) {
        return _organisations[org];
    }

    /// @inheritdoc ICollateralRegistry
    function organisationOf(address signer) public view virtual returns (uint24) {
        uint24 org = _signerOrganisation[signer];
        return org != 0 && _organisations[org].signer == signer ? org : 0;
    }

    /// @inheritdoc ICollateralRegistry
    function nonces(address account) public view virtual returns (uint256) {
        uint24 org = _signerOrganisation[account];
        Organisation storage o = _organisations[org];
        return org != 0 && o.signer == account ? o.nonce : _accountNonces[account];
    }

    /// @inheritdoc ICollateralRegistry
    function organisationCount() public view virtual returns (uint24) {
        return _organisationCount;
    }

    /// @inheritdoc ICollateralRegistry
    function isAffiliated(uint24 orgA, uint24 orgB) public view virtual returns (bool) {
        return _affiliated[_pair(orgA, orgB)];
    }

    /// @inheritdoc ICollateralRegistry
    function lotOf(bytes32 lot) public view virtual returns (Lot memory) {
        return _lots[lot];
    }

    /// @inheritdoc ICollateralRegistry
    function pendingSubstitution(bytes32 lot) public view virtual returns (bytes32) {
        // Only a lot that can return to Pledged can complete it (a stale one stays behind a released lot).
        uint256 open = _PLEDGED | _MARGIN_CALL | _FROZEN;
        return (1 << uint8(_lots[lot].status)) & open != 0 ? _substitutions[lot] : bytes32(0);
    }

    /// @inheritdoc ICollateralRegistry
    function lotOfRegistration(bytes32 registration) public view virtual returns (bytes32) {
        bytes32 lot = _registrations[registration];
        return lot != 0 && _isLive(_lots[lot].status) ? lot : bytes32(0);
    }

    /// @inheritdoc ICollateralRegistry
    function lotOfDevice(bytes32 device) public view virtual returns (bytes32) {
        bytes32 lot = _devices[device];
        return lot != 0 && _lots[lot].status != Status.Closed ? lot : bytes32(0);
    }

    // ------------------------------------------------------------------ approvals

    /**
     * @dev The one check every lot transition goes through. `head` is `abi.encode(typeHash, fields...)` of the
     * transition's typed-data struct up to its nonces; the struct hash appends `signerNonces` and `deadline`
     * (every struct ends with one nonce per signer, then the deadline). Requires, before `deadline`,
     * `signatures[i]` to be the signature of organisation `orgs[i]`'s signer over the EIP-712 digest, and
     * `signerNonces[i]` that signer's current nonce, which is used up.
     */
    function _requireApprovals(
        bytes memory head,
        uint24[] memory orgs,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) private {
        bytes32 digest = _digest(head, orgs.length, deadline, signerNonces, signatures);
        for (uint256 i = 0; i < orgs.length; ++i) {
            Organisation storage o = _organisations[orgs[i]];
            address signer = o.signer;
            if (!_isValidSignature(signer, digest, signatures[i])) revert CollateralRegistryInvalidApproval(i, signer);
            _useOrganisationNonce(o, signer, signerNonces[i]);
        }
    }

    /// @dev {_requireApprovals} for signers named by address (organisation registration and key rotation).
    function _requireAccountApprovals(
        bytes memory head,
        address[] memory accounts,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) private {
        bytes32 digest = _digest(head, accounts.length, deadline, signerNonces, signatures);
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            if (!_isValidSignature(account, digest, signatures[i])) {
                revert CollateralRegistryInvalidApproval(i, account);
            }
            _useNonce(account, signerNonces[i]);
        }
    }

    /**
     * @dev A single approval from organisation `org`'s signer or, failing that, from an ECDSA key holding
     * {SUPERVISOR_ROLE}. Returns the approving signer.
     */
    function _requirePartyOrSupervisor(
        bytes memory head,
        uint24 org,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) private returns (address signer) {
        bytes32 digest = _digest(head, 1, deadline, signerNonces, signatures);
        Organisation storage o = _organisations[org];
        signer = o.signer;
        if (_isValidSignature(signer, digest, signatures[0])) {
            _useOrganisationNonce(o, signer, signerNonces[0]);
        } else {
            signer = _recover(digest, signatures[0]);
            if (signer == address(0) || !hasRole(SUPERVISOR_ROLE, signer)) {
                revert CollateralRegistryUnauthorizedSigner(signer);
            }
            _useNonce(signer, signerNonces[0]);
        }
    }

    /// @dev Uses `nonce` of `account`, wherever its sequence is kept (see {nonces}).
    function _useNonce(address account, uint256 nonce) private {
        uint24 org = _signerOrganisation[account];
        Organisation storage o = _organisations[org];
        if (org != 0 && o.signer == account) {
            _useOrganisationNonce(o, account, nonce);
        } else {
            uint64 current = _accountNonces[account];
            if (nonce != current) revert CollateralRegistryInvalidNonce(account, current);
            unchecked {
                _accountNonces[account] = current + 1;
            }
        }
    }

    function _useOrganisationNonce(Organisation storage o, address signer, uint256 nonce) private {
        uint64 current = o.nonce;
        if (nonce != current) revert CollateralRegistryInvalidNonce(signer, current);
        unchecked {
            o.nonce = current + 1;
        }
    }

    /// @dev Checks the number of approvals and the deadline; returns the EIP-712 digest.
    function _digest(
        bytes memory head,
        uint256 count,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) private view returns (bytes32) {
        if (signerNonces.length != count || signatures.length != count) {
            revert CollateralRegistryApprovalCount(count, signerNonces.length, signatures.length);
        }
        if (block.timestamp > deadline) revert CollateralRegistryExpiredDeadline(deadline);
        return _hashTypedDataV4(_structHash(head, signerNonces, deadline));
    }

    function _isValidSignature(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        address recovered = _recover(digest, signature);
        if (recovered != address(0) && recovered == signer) return true;
        return signer.code.length != 0 && _isValidERC1271Signature(signer, digest, signature);
    }

    /**
     * @dev ERC-1271 `isValidSignature`, as {SignatureChecker-isValidERC1271SignatureNow} does it. That library
     * cannot be imported: OpenZeppelin 5.4 pulls in `Bytes`, which needs `mcopy` (Cancun), and this contract
     * is compiled for paris.
     */
    function _isValidERC1271Signature(address signer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        (bool success, bytes memory result) =
            signer.staticcall(abi.encodeCall(IERC1271.isValidSignature, (digest, signature)));
        return
            success && result.length >= 32
                && abi.decode(result, (bytes32)) == bytes32(IERC1271.isValidSignature.selector);
    }

    /// @dev The ECDSA signer of a 65-byte `r || s || v` signature, or 0 when it is malformed or invalid.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address recovered) {
        if (signature.length != 65) return address(0);
        (recovered,,) =
            ECDSA.tryRecover(digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
    }

    /**
     * @dev `keccak256(abi.encodePacked(head, signerNonces, deadline))`, built once in free memory: `head` is the
     * struct's encoding up to its nonces, which (`uint256`) and the deadline are its last words.
     */
    function _structHash(bytes memory head, uint256[] calldata signerNonces, uint256 deadline)
        private
        pure
        returns (bytes32 hash)
    {
        // Assembly hashes the struct's head, the signers' nonces and the deadline in place:
        // abi.encodePacked would copy the nonce array and cost gas on every transition.
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            let start := mload(0x40)
            let size := mload(head)
            for { let i := 0 } lt(i, size) { i := add(i, 0x20) } { mstore(
                add(start, i),
                mload(add(head, add(0x20, i)))
            ) }
            let noncesSize := shl(5, signerNonces.length)
            calldatacopy(add(start, size), signerNonces.offset, noncesSize)
            mstore(add(start, add(size, noncesSize)), deadline)
            hash := keccak256(start, add(size, add(noncesSize, 0x20)))
        }
    }

    /// @dev `RegisterLot` up to its nonce; the EIP-712 encoding of `bytes32[] devices` is the hash of the packed array.
    function _registerLotHead(bytes32 lot, LotRecord calldata r) private pure returns (bytes memory) {
        return abi.encode(
            _REGISTER_LOT_TYPEHASH,
            lot,
            r.warehouse,
            r.enterprise,
            r.goods,
            r.quantity,
            r.unit,
            keccak256(abi.encodePacked(r.devices))
        );
    }

    // ------------------------------------------------------------------ helpers

    /// @dev The lot, if its status is in the `allowed` set (bit i = `Status(i)`).
    function _lotIn(bytes32 lot, uint256 allowed) private view returns (Lot storage stored) {
        stored = _lots[lot];
        _requireStatus(lot, stored.status, allowed);
    }

    function _requireStatus(bytes32 lot, Status status, uint256 allowed) private pure {
        if ((1 << uint8(status)) & allowed == 0) revert CollateralRegistryInvalidStatus(lot, status);
    }

    /// @dev `quantity` is neither zero nor more than `max`.
    function _requireQuantity(bytes32 lot, uint64 quantity, uint64 max) private pure {
        if (quantity == 0 || quantity > max) revert CollateralRegistryInvalidQuantity(lot, quantity);
    }

    function _requireRecords(bytes32 lot, bytes32 a, bytes32 b) private pure {
        if (a == 0 || b == 0) revert CollateralRegistryMissingRecord(lot);
    }

    function _requireMinimum(bytes32 lot, Lot storage stored, uint64 remaining) private view {
        uint64 minimum = stored.minQuantity;
        if (remaining < minimum) revert CollateralRegistryBelowMinimum(lot, remaining, minimum);
    }

    /// @dev Live pledges: the registration number is in use and the bank's claim stands.
    function _isLive(Status status) private pure returns (bool) {
        return status >= Status.Pledged && status <= Status.Enforcement;
    }

    /// @dev Checks a new lot's record: non-zero hashes and quantity, an independent warehouse.
    function _requireValidRecord(bytes32 lot, LotRecord calldata record) private view {
        _requireRecords(lot, lot, record.goods);
        _requireRecords(lot, record.unit, record.unit);
        _requireQuantity(lot, record.quantity, record.quantity);
        _requireParty(record.warehouse, Role.Warehouse);
        _requireParty(record.enterprise, Role.Enterprise);
        _requireNotAffiliated(record.warehouse, record.enterprise);
    }

    function _bindDevices(bytes32 lot, bytes32[] calldata devices) private {
        uint256 count = devices.length;
        if (count == 0 || count > MAX_DEVICES) revert CollateralRegistryInvalidDevices(count);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 device = devices[i];
            if (device == 0) revert CollateralRegistryInvalidDevices(count);
            bytes32 holder = _devices[device];
            // `holder == lot`: the same device listed twice.
            if (holder != 0 && (holder == lot || _lots[holder].status != Status.Closed)) {
                revert CollateralRegistryDeviceInUse(device, holder);
            }
            _devices[device] = lot;
        }
    }

    /**
     * @dev Pledge signers (enterprise, bank, warehouse) once `bank` is an active bank and the warehouse is still
     * independent of the enterprise (an affiliation may have been recorded since the lot came in).
     */
    function _pledgeSigners(Lot storage stored, uint24 bank) private view returns (uint24[] memory orgs) {
        _requireParty(bank, Role.Bank);
        (uint24 enterprise, uint24 warehouse) = (stored.enterprise, stored.warehouse);
        _requireNotAffiliated(warehouse, enterprise);
        orgs = new uint24[](3);
        (orgs[0], orgs[1], orgs[2]) = (enterprise, bank, warehouse);
    }

    function _requireFreeRegistration(bytes32 registration) private view {
        bytes32 holder = _registrations[registration];
        if (holder != 0 && _isLive(_lots[holder].status)) {
            revert CollateralRegistryRegistrationInUse(registration, holder);
        }
    }

    function _requireOrganisation(uint24 org) private view returns (Organisation storage o) {
        o = _organisations[org];
        if (o.role == Role.None) revert CollateralRegistryUnknownOrganisation(org);
    }

    /// @dev An active organisation of `role`; returns its signer.
    /// @dev `org` is an active organisation of `role`.
    function _requireParty(uint24 org, Role role) private view {
        Organisation storage o = _requireOrganisation(org);
        (Role actual, bool active) = (o.role, o.active);
        if (actual != role) revert CollateralRegistryWrongRole(org, role, actual);
        if (!active) revert CollateralRegistryInactiveOrganisation(org);
    }

    function _requireUnusedSigner(address signer) private view {
        uint24 org = _signerOrganisation[signer];
        if (org != 0) revert CollateralRegistrySignerInUse(signer, org);
    }

    function _requireNotAffiliated(uint24 warehouse, uint24 enterprise) private view {
        if (_affiliated[_pair(warehouse, enterprise)]) revert CollateralRegistryAffiliated(warehouse, enterprise);
    }

    function _bankAndWarehouse(Lot storage stored) private view returns (uint24[] memory) {
        return _orgs(stored.bank, stored.warehouse);
    }

    function _pair(uint24 a, uint24 b) private pure returns (uint48) {
        return a < b ? (uint48(a) << 24) | b : (uint48(b) << 24) | a;
    }

    function _orgs(uint24 a) private pure returns (uint24[] memory orgs) {
        orgs = new uint24[](1);
        orgs[0] = a;
    }

    function _orgs(uint24 a, uint24 b) private pure returns (uint24[] memory orgs) {
        orgs = new uint24[](2);
        (orgs[0], orgs[1]) = (a, b);
    }

    /// @dev `[a]`, or `[a, b]` unless `b` is 0.
    function _accounts(address a, address b) private pure returns (address[] memory accounts) {
        accounts = new address[](b == address(0) ? 1 : 2);
        accounts[0] = a;
        if (b != address(0)) accounts[1] = b;
    }
}
