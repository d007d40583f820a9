// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @dev Interface of {CollateralRegistry}: organisations, goods lots and the lifecycle of a pledge
 * (DOMAIN.md "Lifecycle of a goods lot").
 *
 * Every lot transition carries EIP-712 approvals: `signatures[i]` is the signature of the i-th
 * required party over one typed-data struct that names every party's nonce and one deadline.
 * The functions take the same trailing arguments:
 *
 *     (..., uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
 *
 * where `signerNonces[i]` is the current {nonces} value of the i-th signer. The required parties,
 * in signature order, are listed with each function. "Bank or supervisor" style transitions take
 * one signature from either; its signer is recovered and must hold that role.
 *
 * A lot is identified by `lot`, the hash of its electronic warehouse receipt code: one receipt is one
 * lot. The registration number of the pledge (PBoC movable-property registry) and the supervising
 * device ids are passed hashed as well (a device id hash is `keccak256(bytes(id))`, as in
 * {IDeviceRegistry}). Quantities are `uint64` integers in the lot's `unit` (a short ASCII code
 * such as "kg").
 */
interface ICollateralRegistry {
    enum Role {
        None,
        Warehouse,
        Enterprise,
        Bank,
        Insurer,
        Auditor
    }

    enum Status {
        None,
        Inbound,
        Verified,
        Pledged,
        MarginCall,
        Frozen,
        Defaulted,
        Enforcement,
        Released,
        Closed
    }

    /**
     * @dev An organisation, the one address that signs its approvals, and that signer's next nonce (kept in
     * the same storage slot, so checking a party's signature and using its nonce reads one slot).
     */
    struct Organisation {
        address signer;
        Role role;
        bool active;
        uint64 nonce;
    }

    /**
     * @dev A lot as stored. The first slot holds everything a pledge, a release, a freeze or a margin call
     * reads and writes, so each of them touches one storage slot of the lot:
     *
     * - organisation ids are `uint24` (up to 16,777,215 organisations);
     * - quantities are `uint64` integers in the lot's `unit` (up to 1.8e19: 18 million tonnes counted in grams);
     * - `controlStart`, the Unix time the warehouse took control for the bank, is `uint40`.
     *
     * `goods` and `assay` commit to the off-chain description and quality records of everything currently
     * under control. `bank` is 0 until the lot is pledged. `frozenFrom` is the status a frozen lot returns
     * to when unfrozen. `released` sums the partial releases. `cureBy` is the Unix time by which the current (or
     * last) margin call must be cured; it shares the second slot with `unit` and `released`, so only a margin
     * call writes it.
     */
    struct Lot {
        uint24 warehouse;
        uint24 enterprise;
        uint24 bank;
        Status status;
        Status frozenFrom;
        uint40 controlStart;
        uint64 quantity;
        uint64 minQuantity;
        bytes8 unit;
        uint64 released;
        uint40 cureBy;
        bytes32 goods;
        bytes32 assay;
    }

    /// @dev What the warehouse records when goods come in ({registerLot}); `devices` are device id hashes.
    struct LotRecord {
        uint24 warehouse;
        uint24 enterprise;
        bytes32 goods;
        uint64 quantity;
        bytes8 unit;
        bytes32[] devices;
    }

    /**
     * @dev What the three parties agree on in {pledge}: the bank, the registration number (hashed), the loan
     * terms (hash of value, LTV, warning and disposal lines, minimum control value), the quantity pledged
     * (all the lot holds) and the minimum quantity that must stay under control.
     */
    struct PledgeTerms {
        uint24 bank;
        bytes32 registration;
        bytes32 terms;
        uint64 quantity;
        uint64 minQuantity;
    }

    /**
     * @dev A substitution: `quantityIn` of new goods come in, then `quantityOut` of the old goods leave;
     * `goods` and `assay` describe the lot once it is complete.
     */
    struct Substitution {
        bytes32 goods;
        bytes32 assay;
        uint64 quantityIn;
        uint64 quantityOut;
    }

    // ------------------------------------------------------------------ errors

    error CollateralRegistryUnknownOrganisation(uint24 org);
    error CollateralRegistryWrongRole(uint24 org, Role expected, Role actual);
    error CollateralRegistryInactiveOrganisation(uint24 org);
    /// @dev The zero address, or a role that cannot be registered (`Role.None`).
    error CollateralRegistryInvalidOrganisation(address signer, Role role);
    /// @dev An address signs for at most one organisation.
    error CollateralRegistrySignerInUse(address signer, uint24 org);
    /// @dev The warehouse is affiliated with the enterprise whose goods it would supervise.
    error CollateralRegistryAffiliated(uint24 warehouse, uint24 enterprise);
    error CollateralRegistryLotExists(bytes32 lot);
    /// @dev The transition is not allowed from the lot's current status.
    error CollateralRegistryInvalidStatus(bytes32 lot, Status status);
    /// @dev The registration number is already part of a live pledge of `lot`.
    error CollateralRegistryRegistrationInUse(bytes32 registration, bytes32 lot);
    /// @dev The device already supervises `lot`, which is not closed.
    error CollateralRegistryDeviceInUse(bytes32 device, bytes32 lot);
    /// @dev No supervising device, or more than {MAX_DEVICES}.
    error CollateralRegistryInvalidDevices(uint256 count);
    /// @dev A zero hash where a record is required (goods, assay, registration, terms, receipt).
    error CollateralRegistryMissingRecord(bytes32 lot);
    /// @dev A zero quantity, a quantity that is not the lot's, or a release of more than the lot holds.
    error CollateralRegistryInvalidQuantity(bytes32 lot, uint64 quantity);
    /// @dev The quantity left under control would fall below the minimum control quantity.
    error CollateralRegistryBelowMinimum(bytes32 lot, uint64 remaining, uint64 minimum);
    error CollateralRegistrySubstitutionPending(bytes32 lot);
    error CollateralRegistryNoSubstitution(bytes32 lot);
    error CollateralRegistryExpiredDeadline(uint256 deadline);
    /// @dev `account` signed with a nonce other than its current one, `currentNonce` (a replay, or a stale request).
    error CollateralRegistryInvalidNonce(address account, uint256 currentNonce);
    /// @dev The transition needs `expected` approvals; `signerNonces` and `signatures` had other lengths.
    error CollateralRegistryApprovalCount(uint256 expected, uint256 nonces, uint256 signatures);
    /// @dev `signatures[index]` is not a valid signature of `signer` over the transition's typed data.
    error CollateralRegistryInvalidApproval(uint256 index, address signer);
    /// @dev The recovered signer may not perform this single-party transition.
    error CollateralRegistryUnauthorizedSigner(address signer);
    /// @dev A margin call must give at least {MIN_CURE_PERIOD}: `cureBy` is before `earliest`.
    error CollateralRegistryCurePeriodTooShort(bytes32 lot, uint40 cureBy, uint256 earliest);
    /// @dev The margin call's cure period runs until `cureBy`: the lot cannot default without the bank before then.
    error CollateralRegistryCurePeriodRunning(bytes32 lot, uint40 cureBy);

    // ------------------------------------------------------------------ events

    event OrganisationRegistered(uint24 indexed org, Role role, address indexed signer, string name);
    event OrganisationSignerRotated(uint24 indexed org, address indexed oldSigner, address indexed newSigner);
    event OrganisationActiveSet(uint24 indexed org, bool active);
    event AffiliationSet(uint24 indexed orgA, uint24 indexed orgB, bool affiliated);

    /// @dev → Inbound.
    event LotRegistered(
        bytes32 indexed lot,
        uint24 indexed warehouse,
        uint24 indexed enterprise,
        bytes32 goods,
        uint64 quantity,
        bytes8 unit,
        bytes32[] devices
    );
    /// @dev Inbound → Verified.
    event LotVerified(bytes32 indexed lot, bytes32 assay, uint64 quantity);
    /// @dev Verified → Pledged; `controlStart` is when the warehouse took control for the bank.
    event LotPledged(
        bytes32 indexed lot,
        uint24 indexed bank,
        bytes32 indexed registration,
        bytes32 terms,
        uint64 quantity,
        uint64 minQuantity,
        uint40 controlStart
    );
    /// @dev Pledged → Pledged: `quantity` left the warehouse on the bank's instruction.
    event LotPartiallyReleased(bytes32 indexed lot, uint64 quantity, uint64 remaining);
    /// @dev Pledged → Pledged: substitute goods verified in; the old goods still under control.
    event SubstitutionGoodsVerified(
        bytes32 indexed lot, bytes32 goods, bytes32 assay, uint64 quantityIn, uint64 quantityOut
    );
    /// @dev Pledged → Pledged: the bank approved the substitution and the old goods left.
    event SubstitutionCompleted(
        bytes32 indexed lot, bytes32 goods, bytes32 assay, uint64 quantityOut, uint64 remaining
    );
    /// @dev Pledged → MarginCall, by the bank or the supervision key `by`; cure by `cureBy` (Unix time).
    event MarginCalled(bytes32 indexed lot, address indexed by, bytes32 reason, uint40 cureBy);
    /// @dev MarginCall → Pledged with more goods (warehouse confirms).
    event MarginCallCuredWithGoods(bytes32 indexed lot, bytes32 goods, bytes32 assay, uint64 quantityIn);
    /// @dev MarginCall → Pledged with cash (bank confirms).
    event MarginCallCuredWithCash(bytes32 indexed lot, bytes32 payment);
    /// @dev Pledged/MarginCall → Frozen, by the warehouse or the supervision key `by`.
    event LotFrozen(bytes32 indexed lot, address indexed by, bytes32 reason);
    /// @dev Frozen → the status before the freeze (bank and warehouse together).
    event LotUnfrozen(bytes32 indexed lot, Status status);
    /// @dev Pledged/MarginCall/Frozen → Defaulted (bank), or MarginCall → Defaulted once the cure period is over
    /// (supervision key).
    event LotDefaulted(bytes32 indexed lot, bytes32 reason);
    /// @dev Defaulted → Enforcement: the warehouse handed control to the bank.
    event LotEnforcementStarted(bytes32 indexed lot);
    /// @dev Pledged/MarginCall → Released: `quantity` leaves the warehouse, the pledge is over.
    event LotReleased(bytes32 indexed lot, uint64 quantity);
    /// @dev → Closed: goods delivered out, receipt cancelled.
    event LotClosed(bytes32 indexed lot, Status from);

    // ------------------------------------------------------------------ organisations

    /**
     * @dev Records an organisation (REGISTRAR_ROLE). `signature` is the signer's own approval of
     * `RegisterOrganisation` (proof that it holds the key), which consumes its first nonce.
     */
    function registerOrganisation(
        Role role,
        address signer,
        string calldata name,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external returns (uint24 org);

    /// @dev Replaces an organisation's signer. Signatures: current signer, new signer. No role needed.
    function rotateSigner(
        uint24 org,
        address newSigner,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev (REGISTRAR_ROLE) An inactive organisation cannot be named in a new lot or pledge. Lots it is
     * already part of are unaffected: its signatures still count there.
     */
    function setOrganisationActive(uint24 org, bool active) external;

    /// @dev (REGISTRAR_ROLE) Records whether two organisations are affiliated (shareholding, control).
    function setAffiliation(uint24 orgA, uint24 orgB, bool affiliated) external;

    // ------------------------------------------------------------------ lot lifecycle

    /**
     * @dev → Inbound. Signatures: warehouse. The typed data (`RegisterLot`) lists the fields of `record`
     * after `lot`; they are grouped in a struct here only to keep the function within the stack limit.
     */
    function registerLot(
        bytes32 lot,
        LotRecord calldata record,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev Inbound → Verified (first stocktake, assay record). Signatures: warehouse, enterprise.
    function verifyLot(
        bytes32 lot,
        bytes32 assay,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev Verified → Pledged. Signatures: enterprise, bank, warehouse (confirms control; the control start
     * time is the block's). The typed data (`Pledge`) lists the fields of `p` after `lot`.
     */
    function pledge(
        bytes32 lot,
        PledgeTerms calldata p,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev Pledged → Pledged, `quantity` goes out; the rest stays ≥ minQuantity. Signatures: bank, warehouse.
    function partialRelease(
        bytes32 lot,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev Pledged → Pledged, substitution step 1: the new goods are verified in and added to the quantity
     * under control; the enterprise asks for `s.quantityOut` of the old goods to leave. Signatures:
     * enterprise (requests), warehouse (verifies). The typed data (`SubstituteIn`) lists the fields of `s`.
     */
    function substituteIn(
        bytes32 lot,
        Substitution calldata s,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev Pledged → Pledged, substitution step 2: the old goods leave. `s` must be the pending substitution,
     * so the bank approves exactly what was verified in. Signatures: bank (approves), warehouse (executes
     * the outbound). Typed data: `SubstituteOut`, the same fields as `SubstituteIn`.
     */
    function substituteOut(
        bytes32 lot,
        Substitution calldata s,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev Pledged → MarginCall, to be cured by `cureBy` (Unix time, at least {MIN_CURE_PERIOD} away; the cure
     * period of the loan terms). One signature: the bank or an account with SUPERVISOR_ROLE.
     */
    function marginCall(
        bytes32 lot,
        bytes32 reason,
        uint40 cureBy,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev MarginCall → Pledged with `quantityIn` more goods. Signatures: warehouse.
    function cureWithGoods(
        bytes32 lot,
        bytes32 goods,
        bytes32 assay,
        uint64 quantityIn,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev MarginCall → Pledged with cash `payment` (a reference hash). Signatures: bank.
    function cureWithCash(
        bytes32 lot,
        bytes32 payment,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev Pledged/MarginCall → Frozen. One signature: the warehouse or an account with SUPERVISOR_ROLE.
    function freeze(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev Frozen → the status before the freeze. Signatures: bank, warehouse.
    function unfreeze(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
        external;

    /// @dev Pledged/MarginCall/Frozen → Defaulted. Signatures: bank.
    function declareDefault(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev MarginCall → Defaulted once the margin call's cure period is over (`block.timestamp > cureBy`): an uncured
     * call ends in default without waiting for the bank, which agreed to the cure period in the pledged terms and
     * could have cured or defaulted itself until then. One signature: an account with SUPERVISOR_ROLE.
     */
    function defaultUncured(
        bytes32 lot,
        bytes32 reason,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /// @dev Defaulted → Enforcement. Signatures: bank (takes control), warehouse (hands it over).
    function enforce(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures)
        external;

    /// @dev Pledged/MarginCall → Released; `quantity` must be all the lot holds. Signatures: bank, warehouse.
    function release(
        bytes32 lot,
        uint64 quantity,
        uint256 deadline,
        uint256[] calldata signerNonces,
        bytes[] calldata signatures
    ) external;

    /**
     * @dev → Closed. From Inbound or Verified the signature is the warehouse's (`Close`); from Released or
     * Enforcement (the lot was pledged) the bank's and then the warehouse's (`ClosePledged`).
     */
    function close(bytes32 lot, uint256 deadline, uint256[] calldata signerNonces, bytes[] calldata signatures) external;

    // ------------------------------------------------------------------ views

    function organisation(uint24 org) external view returns (Organisation memory);
    /// @dev The organisation `signer` signs for, 0 if none.
    function organisationOf(address signer) external view returns (uint24);
    function organisationCount() external view returns (uint24);
    /**
     * @dev The next nonce `account` must sign with. Every address has one sequence, used once per approval:
     * an organisation's current signer keeps it in the organisation's slot, any other address (a supervision
     * key, a signer before registration or after rotation) in a mapping; it moves with the address.
     */
    function nonces(address account) external view returns (uint256);
    function isAffiliated(uint24 orgA, uint24 orgB) external view returns (bool);
    /// @dev The lot; a zero struct (status None) if there is none.
    function lotOf(bytes32 lot) external view returns (Lot memory);
    /// @dev `keccak256(abi.encode(s))` of the substitution waiting for the bank, 0 if none (or the pledge ended).
    function pendingSubstitution(bytes32 lot) external view returns (bytes32);
    /// @dev The lot whose live pledge uses `registration`, 0 if none.
    function lotOfRegistration(bytes32 registration) external view returns (bytes32);
    /// @dev The lot `device` supervises, 0 if none (or only closed ones).
    function lotOfDevice(bytes32 device) external view returns (bytes32);
}
