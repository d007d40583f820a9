// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/**
 * @dev Test-only: exposes OpenZeppelin's on-chain multiproof check, so the Python multiproofs
 * (attestation.merkle) can be checked against the exact code a contract would run.
 */
contract MultiProofHarness {
    function multiProofVerify(bytes32[] calldata proof, bool[] calldata proofFlags, bytes32 root, bytes32[] calldata leaves)
        external
        pure
        returns (bool)
    {
        return MerkleProof.multiProofVerifyCalldata(proof, proofFlags, root, leaves);
    }

    function processMultiProof(bytes32[] calldata proof, bool[] calldata proofFlags, bytes32[] calldata leaves)
        external
        pure
        returns (bytes32)
    {
        return MerkleProof.processMultiProofCalldata(proof, proofFlags, leaves);
    }
}
