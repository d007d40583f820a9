// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @dev The subset of the Foundry/EDR cheatcodes used by these tests (forge-std is not available offline).
 * Signatures must match the cheatcode ABI exactly; see https://book.getfoundry.sh/cheatcodes/.
 */
interface Vm {
    /// @dev Gas of the last call made by the test contract (`lastCallGas`).
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    // Environment
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function label(address account, string calldata newLabel) external;
    function warp(uint256 newTimestamp) external;
    function cool(address target) external;

    // Gas
    function lastCallGas() external view returns (Gas memory gas);

    function chainId(uint256 newChainId) external;

    // Keys and signatures
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);

    // Expectations
    function expectRevert(bytes calldata revertData) external;
    function expectRevert() external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter)
        external;

    // Fuzzing
    function assume(bool condition) external pure;

    // Assertions (revert with "<message>: <left> != <right>")
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertEq(bool left, bool right, string calldata error) external pure;
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertEq(bytes calldata left, bytes calldata right, string calldata error) external pure;
    function assertNotEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertGe(uint256 left, uint256 right, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
    function assertLt(uint256 left, uint256 right, string calldata error) external pure;
    function assertGt(uint256 left, uint256 right, string calldata error) external pure;
}

/// @dev address(uint160(uint256(keccak256("hevm cheat code")))) = 0x7109709ECfa91a80626fF3989D68f67F5b1DD12D
Vm constant VM = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
