// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ICollateralRegistry} from "../../../contracts/interfaces/ICollateralRegistry.sol";

/**
 * @dev Reference EIP-712 encoding of every {CollateralRegistry} action, written from the EIP-712 specification
 * and the type strings, independently of the contract's own (assembly) struct hashing: the domain separator
 * is built here, not read from the contract, so a signature made with it proves the contract binds the chain
 * id and its own address. `n` holds the signers' nonces in signature order; a missing one encodes as 0, so a
 * test can sign typed data for a short nonce list.
 */
library CollateralTypedData {
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    bytes32 internal constant REGISTER_ORGANISATION =
        keccak256("RegisterOrganisation(uint8 role,address signer,string name,uint256 nonce,uint256 deadline)");
    bytes32 internal constant ROTATE_SIGNER =
        keccak256("RotateSigner(uint24 org,address newSigner,uint256 currentNonce,uint256 newNonce,uint256 deadline)");
    bytes32 internal constant REGISTER_LOT = keccak256(
        "RegisterLot(bytes32 lot,uint24 warehouse,uint24 enterprise,bytes32 goods,uint64 quantity,bytes8 unit,bytes32[] devices,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant VERIFY_LOT = keccak256(
        "VerifyLot(bytes32 lot,bytes32 assay,uint64 quantity,uint256 warehouseNonce,uint256 enterpriseNonce,uint256 deadline)"
    );
    bytes32 internal constant PLEDGE = keccak256(
        "Pledge(bytes32 lot,uint24 bank,bytes32 registration,bytes32 terms,uint64 quantity,uint64 minQuantity,uint256 enterpriseNonce,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant PARTIAL_RELEASE = keccak256(
        "PartialRelease(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant SUBSTITUTE_IN = keccak256(
        "SubstituteIn(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,uint256 enterpriseNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant SUBSTITUTE_OUT = keccak256(
        "SubstituteOut(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint64 quantityOut,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant MARGIN_CALL =
        keccak256("MarginCall(bytes32 lot,bytes32 reason,uint40 cureBy,uint256 nonce,uint256 deadline)");
    bytes32 internal constant CURE_WITH_GOODS = keccak256(
        "CureWithGoods(bytes32 lot,bytes32 goods,bytes32 assay,uint64 quantityIn,uint256 warehouseNonce,uint256 deadline)"
    );
    bytes32 internal constant CURE_WITH_CASH =
        keccak256("CureWithCash(bytes32 lot,bytes32 payment,uint256 bankNonce,uint256 deadline)");
    bytes32 internal constant FREEZE = keccak256("Freeze(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)");
    bytes32 internal constant UNFREEZE =
        keccak256("Unfreeze(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 internal constant DEFAULT =
        keccak256("Default(bytes32 lot,bytes32 reason,uint256 bankNonce,uint256 deadline)");
    bytes32 internal constant DEFAULT_UNCURED =
        keccak256("DefaultUncured(bytes32 lot,bytes32 reason,uint256 nonce,uint256 deadline)");
    bytes32 internal constant ENFORCE =
        keccak256("Enforce(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 internal constant RELEASE =
        keccak256("Release(bytes32 lot,uint64 quantity,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");
    bytes32 internal constant CLOSE = keccak256("Close(bytes32 lot,uint256 warehouseNonce,uint256 deadline)");
    bytes32 internal constant CLOSE_PLEDGED =
        keccak256("ClosePledged(bytes32 lot,uint256 bankNonce,uint256 warehouseNonce,uint256 deadline)");

    function domainSeparator(uint256 chainId, address verifyingContract) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("CollateralRegistry"), keccak256("1"), chainId, verifyingContract)
        );
    }

    function digest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domain, structHash));
    }

    function at(uint256[] memory n, uint256 i) internal pure returns (uint256) {
        return i < n.length ? n[i] : 0;
    }

    function registerOrganisation(
        ICollateralRegistry.Role role,
        address signer,
        string memory name,
        uint256[] memory n,
        uint256 deadline
    ) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(REGISTER_ORGANISATION, uint8(role), signer, keccak256(bytes(name)), at(n, 0), deadline)
        );
    }

    function rotateSigner(uint24 org, address newSigner, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(ROTATE_SIGNER, org, newSigner, at(n, 0), at(n, 1), deadline));
    }

    function registerLot(bytes32 lot, ICollateralRegistry.LotRecord memory r, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                REGISTER_LOT,
                lot,
                r.warehouse,
                r.enterprise,
                r.goods,
                r.quantity,
                r.unit,
                keccak256(abi.encodePacked(r.devices)),
                at(n, 0),
                deadline
            )
        );
    }

    function verifyLot(bytes32 lot, bytes32 assay, uint64 quantity, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(VERIFY_LOT, lot, assay, quantity, at(n, 0), at(n, 1), deadline));
    }

    function pledge(bytes32 lot, ICollateralRegistry.PledgeTerms memory p, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                PLEDGE,
                lot,
                p.bank,
                p.registration,
                p.terms,
                p.quantity,
                p.minQuantity,
                at(n, 0),
                at(n, 1),
                at(n, 2),
                deadline
            )
        );
    }

    /// @dev PartialRelease and Release: `(lot, quantity, bankNonce, warehouseNonce, deadline)`.
    function lotQuantity(bytes32 typeHash, bytes32 lot, uint64 quantity, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(typeHash, lot, quantity, at(n, 0), at(n, 1), deadline));
    }

    /// @dev SubstituteIn and SubstituteOut.
    function substitution(
        bytes32 typeHash,
        bytes32 lot,
        ICollateralRegistry.Substitution memory s,
        uint256[] memory n,
        uint256 deadline
    ) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(typeHash, lot, s.goods, s.assay, s.quantityIn, s.quantityOut, at(n, 0), at(n, 1), deadline)
        );
    }

    function marginCall(bytes32 lot, bytes32 reason, uint40 cureBy, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(MARGIN_CALL, lot, reason, cureBy, at(n, 0), deadline));
    }

    /// @dev Freeze, Default, DefaultUncured and CureWithCash: `(lot, bytes32, nonce, deadline)`.
    function lotRecord(bytes32 typeHash, bytes32 lot, bytes32 value, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(typeHash, lot, value, at(n, 0), deadline));
    }

    function cureWithGoods(
        bytes32 lot,
        bytes32 goods,
        bytes32 assay,
        uint64 quantityIn,
        uint256[] memory n,
        uint256 deadline
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(CURE_WITH_GOODS, lot, goods, assay, quantityIn, at(n, 0), deadline));
    }

    /// @dev Close: `(lot, warehouseNonce, deadline)`.
    function lotOnly(bytes32 typeHash, bytes32 lot, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(typeHash, lot, at(n, 0), deadline));
    }

    /// @dev Unfreeze, Enforce and ClosePledged: `(lot, bankNonce, warehouseNonce, deadline)`.
    function lotOnly2(bytes32 typeHash, bytes32 lot, uint256[] memory n, uint256 deadline)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(typeHash, lot, at(n, 0), at(n, 1), deadline));
    }
}
