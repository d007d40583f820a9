// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DeviceRegistry} from "../../contracts/DeviceRegistry.sol";
import {ReadingAnchor} from "../../contracts/ReadingAnchor.sol";
import {IDeviceRegistry} from "../../contracts/interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../../contracts/interfaces/IReadingAnchor.sol";
import {Vm} from "./utils/Vm.sol";
import {Assertions} from "./utils/Assertions.sol";
import {StandardMerkle} from "./utils/StandardMerkle.sol";

/**
 * @dev Unit and fuzz tests of {ReadingAnchor} (SPEC §3).
 */
contract ReadingAnchorTest is Assertions {
    address internal constant ADMIN = address(0xA11CE);
    address internal constant WRITER = address(0xB0B);
    address internal constant STRANGER = address(0xCAFE);

    /// @dev Issue 4: a checkpoint's receipt must show at most this much gas.
    uint256 internal constant GAS_BUDGET = 48_000;
    /// @dev What a checkpoint may cost here: the budget less room for the calldata of larger indexes
    /// (12 gas per extra non-zero byte of `index`) and small compiler changes.
    uint256 internal constant GAS_CEILING = 47_900;

    DeviceRegistry internal registry;
    ReadingAnchor internal anchor;

    function setUp() public {
        registry = new DeviceRegistry(ADMIN, ADMIN);
        anchor = new ReadingAnchor(WRITER, registry);
        vm.label(ADMIN, "ADMIN");
        vm.label(WRITER, "WRITER");
        vm.label(STRANGER, "STRANGER");
    }

    // ---------------------------------------------------------------- helpers

    /// @dev Appends a checkpoint as WRITER on top of the current head; returns its index.
    function _checkpoint(bytes32 root) internal returns (uint256 index) {
        index = anchor.size();
        vm.prank(WRITER);
        anchor.checkpoint(index, root);
    }

    function _root(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("root", i));
    }

    function _assertHead(uint256 size, bytes32 root, string memory what) internal view {
        (uint256 s, bytes32 r) = anchor.head();
        vm.assertEq(s, size, string.concat(what, ": head size"));
        vm.assertEq(r, root, string.concat(what, ": head root"));
        vm.assertEq(anchor.size(), size, string.concat(what, ": size()"));
    }

    /// @dev Receipt gas of `checkpoint(index, root)` sent as a transaction: 21,000 + calldata + execution
    /// (cold storage, as in a fresh transaction; no refunds are involved).
    function _checkpointTxGas(uint256 index, bytes32 root) internal returns (uint256) {
        bytes memory data = abi.encodeCall(anchor.checkpoint, (index, root));
        vm.cool(address(anchor));
        vm.prank(WRITER);
        (bool ok,) = address(anchor).call(data);
        vm.assertTrue(ok, "checkpoint succeeded");
        Vm.Gas memory gas = vm.lastCallGas();
        vm.assertTrue(gas.gasRefunded == 0, "no refund");
        uint256 calldataGas = 0;
        for (uint256 i = 0; i < data.length; ++i) {
            calldataGas += data[i] == 0 ? 4 : 16;
        }
        return 21_000 + calldataGas + gas.gasTotalUsed;
    }

    /// @dev The salts/digests of the vectors generated with @openzeppelin/merkle-tree 1.0.8.
    function _value(uint256 i) internal pure returns (bytes32 salt, bytes32 digest) {
        salt = sha256(bytes(string.concat("salt", _digit(i))));
        digest = sha256(bytes(string.concat("digest", _digit(i))));
    }

    function _digit(uint256 i) private pure returns (string memory) {
        return string(abi.encodePacked(bytes1(uint8(48 + i))));
    }

    // ---------------------------------------------------------------- constructor

    function test_constructor_setsWriterAndRegistry() public view {
        vm.assertEq(anchor.writer(), WRITER, "writer");
        vm.assertEq(address(anchor.deviceRegistry()), address(registry), "deviceRegistry");
    }

    function test_constructor_emptyChain() public view {
        _assertHead(0, bytes32(0), "empty");
    }

    function test_constructor_zeroWriterReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorInvalidWriter.selector, address(0)));
        new ReadingAnchor(address(0), registry);
    }

    function testFuzz_constructor_storesArguments(address writer, address reg) public {
        vm.assume(writer != address(0));
        ReadingAnchor other = new ReadingAnchor(writer, IDeviceRegistry(reg));
        vm.assertEq(other.writer(), writer, "writer");
        vm.assertEq(address(other.deviceRegistry()), reg, "deviceRegistry");
    }

    // ---------------------------------------------------------------- checkpoint

    function test_checkpoint_appendsAtSize() public {
        for (uint256 i = 0; i < 3; ++i) {
            vm.prank(WRITER);
            anchor.checkpoint(i, _root(i));
            _assertHead(i + 1, _root(i), "after checkpoint");
        }
        for (uint256 i = 0; i < 3; ++i) {
            vm.assertEq(anchor.rootOf(i), _root(i), "rootOf(i)");
        }
    }

    function test_checkpoint_emitsCheckpointed() public {
        vm.expectEmit(true, true, true, true, address(anchor));
        emit IReadingAnchor.Checkpointed(0);
        vm.prank(WRITER);
        anchor.checkpoint(0, _root(0));

        vm.expectEmit(true, true, true, true, address(anchor));
        emit IReadingAnchor.Checkpointed(1);
        vm.prank(WRITER);
        anchor.checkpoint(1, _root(1));
    }

    function test_checkpoint_sameRootTwiceMakesDistinctCheckpoints() public {
        _checkpoint(_root(0));
        _checkpoint(_root(0));
        _assertHead(2, _root(0), "two checkpoints");
        vm.assertEq(anchor.rootOf(0), anchor.rootOf(1), "same root stored twice");
    }

    /// @dev A writer whose view is stale (it missed checkpoints) names a taken index: refused, naming the
    /// root already there; nothing is replaced.
    function test_checkpoint_takenIndexReverts() public {
        _checkpoint(_root(0));
        _checkpoint(_root(1));
        for (uint256 i = 0; i < 2; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorAlreadyAnchored.selector, i, _root(i))
            );
            vm.prank(WRITER);
            anchor.checkpoint(i, keccak256("another batch"));
        }
        _assertHead(2, _root(1), "unchanged");
        vm.assertEq(anchor.rootOf(0), _root(0), "root 0 unchanged");
    }

    /// @dev A checkpoint beyond the head would leave a gap: refused, also on an empty chain.
    function test_checkpoint_gapReverts() public {
        uint256[3] memory ahead = [uint256(1), 2, type(uint256).max];
        for (uint256 i = 0; i < ahead.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorMissingPrevious.selector, ahead[i]));
            vm.prank(WRITER);
            anchor.checkpoint(ahead[i], _root(9));
        }
        _checkpoint(_root(0));
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorMissingPrevious.selector, 2));
        vm.prank(WRITER);
        anchor.checkpoint(2, _root(2));
        _assertHead(1, _root(0), "unchanged");
    }

    function test_checkpoint_zeroRootReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyRoot.selector));
        vm.prank(WRITER);
        anchor.checkpoint(0, bytes32(0));
        _assertHead(0, bytes32(0), "unchanged");
    }

    function test_checkpoint_nonWriterReverts() public {
        address[3] memory callers = [STRANGER, ADMIN, address(this)];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnauthorizedWriter.selector, callers[i])
            );
            vm.prank(callers[i]);
            anchor.checkpoint(0, _root(0));
        }
        _assertHead(0, bytes32(0), "unchanged");
    }

    /// @dev Issue 4: at most 48,000 gas per checkpoint, link check and stored root included. Index 0 has no
    /// link to read; every later index pays one cold read for it.
    function test_checkpoint_gasWithinBudget() public {
        uint256 first = _checkpointTxGas(0, _root(0));
        vm.assertLe(first, GAS_CEILING, "checkpoint 0");
        for (uint256 i = 1; i < 4; ++i) {
            uint256 gas = _checkpointTxGas(i, _root(i));
            vm.assertLe(gas, GAS_CEILING, "checkpoint i");
            vm.assertGe(gas, first + 2_100, "the link is one cold read more than checkpoint 0");
        }
        vm.assertLe(GAS_CEILING, GAS_BUDGET, "ceiling within the budget");
        _assertHead(4, _root(3), "four checkpoints");
    }

    // ---------------------------------------------------------------- rootOf, size, head

    function test_rootOf_unknownIndexReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 0));
        anchor.rootOf(0);
        _checkpoint(_root(0));
        _checkpoint(_root(1));
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 2));
        anchor.rootOf(2);
        vm.expectRevert(
            abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, type(uint256).max)
        );
        anchor.rootOf(type(uint256).max);
    }

    /// @dev The gallop-and-bisect search of {size} at every length up to 130 (powers of two and their
    /// neighbours included).
    function test_size_isFoundAtEveryLength() public {
        for (uint256 n = 1; n <= 130; ++n) {
            vm.prank(WRITER);
            anchor.checkpoint(n - 1, _root(n));
            _assertHead(n, _root(n), "after n checkpoints");
        }
    }

    // ---------------------------------------------------------------- verifyReading

    /// @dev Cross-check of {StandardMerkle} against roots printed by @openzeppelin/merkle-tree 1.0.8
    /// (`StandardMerkleTree.of(values, ["bytes32","bytes32"]).root`).
    function test_standardMerkle_matchesOpenZeppelinMerkleTree() public pure {
        (bytes32 s0, bytes32 d0) = _value(0);
        (bytes32 s1, bytes32 d1) = _value(1);
        (bytes32 s2, bytes32 d2) = _value(2);
        bytes32 l0 = StandardMerkle.leaf(s0, d0);
        bytes32 l1 = StandardMerkle.leaf(s1, d1);
        bytes32 l2 = StandardMerkle.leaf(s2, d2);
        vm.assertEq(l0, 0x5f86932872965020908e0cd659955344519cbcba2bece78de104e58fc79ad568, "leaf 0");
        vm.assertEq(l1, 0x2919f04617fb750ff1040368e61c177c5ef4186c0f64e0bceeb127aadae3b186, "leaf 1");
        vm.assertEq(l2, 0x8e21b60389b1f020ebde8e1e4bbc1223b1dced1c084aaefe95cce5cc1661fd3d, "leaf 2");
        vm.assertEq(
            StandardMerkle.node(l0, l1),
            0xfd5fd012009cd8572300ad40ad88d32553e2bc251cec77d06ba44e63f30f81b4,
            "2-leaf root"
        );
        (bytes32 a, bytes32 b, bytes32 c) = StandardMerkle.sort3(l0, l1, l2);
        vm.assertEq(
            StandardMerkle.node(StandardMerkle.node(a, b), c),
            0x929b70b4cd16aa0b6554108d73208c2468b2df8b4e7920d19dda6d697cb0ec9b,
            "3-leaf root"
        );
    }

    function test_verifyReading_twoLeafTree() public {
        (bytes32 s0, bytes32 d0) = _value(0);
        (bytes32 s1, bytes32 d1) = _value(1);
        bytes32 l0 = StandardMerkle.leaf(s0, d0);
        bytes32 l1 = StandardMerkle.leaf(s1, d1);
        _checkpoint(StandardMerkle.node(l0, l1));

        vm.assertTrue(anchor.verifyReading(0, s0, d0, StandardMerkle.one(l1)), "reading 0");
        vm.assertTrue(anchor.verifyReading(0, s1, d1, StandardMerkle.one(l0)), "reading 1");

        // Tampered salt, tampered digest, swapped fields, a foreign pair, wrong or empty proof.
        vm.assertFalse(anchor.verifyReading(0, s0 ^ bytes32(uint256(1)), d0, StandardMerkle.one(l1)), "salt");
        vm.assertFalse(anchor.verifyReading(0, s0, d0 ^ bytes32(uint256(1) << 255), StandardMerkle.one(l1)), "digest");
        vm.assertFalse(anchor.verifyReading(0, d0, s0, StandardMerkle.one(l1)), "swapped");
        vm.assertFalse(anchor.verifyReading(0, s0, d1, StandardMerkle.one(l1)), "mixed pair");
        vm.assertFalse(anchor.verifyReading(0, s0, d0, StandardMerkle.one(l0)), "wrong sibling");
        vm.assertFalse(anchor.verifyReading(0, s0, d0, new bytes32[](0)), "empty proof");
    }

    function test_verifyReading_threeLeafTree() public {
        bytes32[3] memory salts;
        bytes32[3] memory digests;
        bytes32[3] memory leaves;
        for (uint256 i = 0; i < 3; ++i) {
            (salts[i], digests[i]) = _value(i);
            leaves[i] = StandardMerkle.leaf(salts[i], digests[i]);
        }
        (bytes32 a, bytes32 b, bytes32 c) = StandardMerkle.sort3(leaves[0], leaves[1], leaves[2]);
        bytes32 ab = StandardMerkle.node(a, b);
        _checkpoint(bytes32(uint256(0xdead))); // index 0: an unrelated batch
        _checkpoint(StandardMerkle.node(ab, c)); // index 1

        for (uint256 i = 0; i < 3; ++i) {
            bytes32 l = leaves[i];
            bytes32[] memory proof = l == c
                ? StandardMerkle.one(ab)
                : StandardMerkle.two(l == a ? b : a, c);
            vm.assertTrue(anchor.verifyReading(1, salts[i], digests[i], proof), "valid reading");
            vm.assertFalse(anchor.verifyReading(0, salts[i], digests[i], proof), "other checkpoint");
            vm.assertFalse(anchor.verifyReading(1, salts[i] ^ bytes32(uint256(1)), digests[i], proof), "salt");
            vm.assertFalse(anchor.verifyReading(1, salts[i], ~digests[i], proof), "digest");
        }
    }

    /// @dev The second-preimage attack: the children (x, y) of an inner node, with x < y, passed off as
    /// (salt, digest). A single-hashed leaf keccak256(abi.encode(x, y)) would equal the inner node and
    /// verify; the double hash of StandardMerkleTree makes it fail.
    function test_verifyReading_innerNodeIsNeverAReading() public {
        (bytes32 s0, bytes32 d0) = _value(0);
        (bytes32 s1, bytes32 d1) = _value(1);
        (bytes32 s2, bytes32 d2) = _value(2);
        (bytes32 a, bytes32 b, bytes32 c) =
            StandardMerkle.sort3(StandardMerkle.leaf(s0, d0), StandardMerkle.leaf(s1, d1), StandardMerkle.leaf(s2, d2));
        bytes32 ab = StandardMerkle.node(a, b);
        bytes32 root = StandardMerkle.node(ab, c);
        _checkpoint(root);

        bytes32[] memory proofOfAb = StandardMerkle.one(c);
        // Sanity: the attack is real against a single-hash leaf.
        vm.assertTrue(MerkleProof.verify(proofOfAb, root, keccak256(abi.encode(a, b))), "attack premise");
        vm.assertFalse(anchor.verifyReading(0, a, b, proofOfAb), "inner node (a, b)");
        vm.assertFalse(anchor.verifyReading(0, b, a, proofOfAb), "inner node (b, a)");
        // The root's own children, with an empty proof.
        vm.assertFalse(anchor.verifyReading(0, ab < c ? ab : c, ab < c ? c : ab, new bytes32[](0)), "root");
    }

    /// @dev Every inner node of a four-leaf tree, presented as a reading with the valid proof of that node,
    /// in both orders of its children: none verifies, while every real reading does.
    function test_verifyReading_noInnerNodeOfAFourLeafTreeIsAReading() public {
        bytes32[4] memory leaves;
        bytes32[4] memory salts;
        bytes32[4] memory digests;
        for (uint256 i = 0; i < 4; ++i) {
            salts[i] = keccak256(abi.encode("salt", i));
            digests[i] = keccak256(abi.encode("digest", i));
            leaves[i] = StandardMerkle.leaf(salts[i], digests[i]);
        }
        // Any pairing works for the attack; the tree is ((l0, l1), (l2, l3)).
        bytes32 left = StandardMerkle.node(leaves[0], leaves[1]);
        bytes32 right = StandardMerkle.node(leaves[2], leaves[3]);
        _checkpoint(StandardMerkle.node(left, right));

        vm.assertTrue(anchor.verifyReading(0, salts[0], digests[0], StandardMerkle.two(leaves[1], right)), "reading 0");
        vm.assertTrue(anchor.verifyReading(0, salts[3], digests[3], StandardMerkle.two(leaves[2], left)), "reading 3");

        vm.assertFalse(anchor.verifyReading(0, leaves[0], leaves[1], StandardMerkle.one(right)), "left (l0, l1)");
        vm.assertFalse(anchor.verifyReading(0, leaves[1], leaves[0], StandardMerkle.one(right)), "left (l1, l0)");
        vm.assertFalse(anchor.verifyReading(0, leaves[2], leaves[3], StandardMerkle.one(left)), "right (l2, l3)");
        vm.assertFalse(anchor.verifyReading(0, leaves[3], leaves[2], StandardMerkle.one(left)), "right (l3, l2)");
        vm.assertFalse(anchor.verifyReading(0, left, right, new bytes32[](0)), "root (left, right)");
        vm.assertFalse(anchor.verifyReading(0, right, left, new bytes32[](0)), "root (right, left)");
    }

    function test_verifyReading_unknownIndexReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 0));
        anchor.verifyReading(0, bytes32(0), bytes32(0), new bytes32[](0));
    }

    // ---------------------------------------------------------------- fuzz

    function testFuzz_checkpoint_anyNonZeroRootAccepted(bytes32 root) public {
        vm.assume(root != bytes32(0));
        uint256 index = _checkpoint(root);
        vm.assertEq(index, 0, "index");
        vm.assertEq(anchor.rootOf(0), root, "root");
        _assertHead(1, root, "head");
    }

    /// @dev Only index == size is accepted: below it names a taken checkpoint, above it a gap.
    function testFuzz_checkpoint_onlyTheNextIndexIsAccepted(uint8 n, uint256 index, bytes32 root) public {
        n = uint8(_bound(n, 0, 8));
        vm.assume(root != bytes32(0));
        for (uint256 i = 0; i < n; ++i) {
            _checkpoint(_root(i));
        }
        if (index % 3 == 0) index = n; // a third of the runs try the right index
        else if (index % 3 == 1 && n > 0) index = _bound(index, 0, n - 1);

        if (index < n) {
            vm.expectRevert(
                abi.encodeWithSelector(IReadingAnchor.ReadingAnchorAlreadyAnchored.selector, index, _root(index))
            );
        } else if (index > n) {
            vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorMissingPrevious.selector, index));
        }
        vm.prank(WRITER);
        anchor.checkpoint(index, root);

        if (index == n) {
            _assertHead(n + 1, root, "appended");
        } else {
            _assertHead(n, n == 0 ? bytes32(0) : _root(n - 1), "unchanged");
        }
    }

    function testFuzz_checkpoint_unauthorizedReverts(address caller, uint256 index, bytes32 root) public {
        vm.assume(caller != WRITER);
        _checkpoint(_root(0));
        if (index % 2 == 0) index = 1; // half the time, a perfectly valid checkpoint
        if (root == bytes32(0)) root = _root(1);

        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnauthorizedWriter.selector, caller));
        vm.prank(caller);
        anchor.checkpoint(index, root);
        _assertHead(1, _root(0), "unchanged");
    }

    function testFuzz_rootOf_unknownIndexReverts(uint256 index, uint8 n) public {
        n = uint8(_bound(n, 0, 6));
        for (uint256 i = 0; i < n; ++i) {
            _checkpoint(_root(i));
        }
        index = _bound(index, n, type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, index));
        anchor.rootOf(index);
    }

    function testFuzz_verifyReading_twoLeaves(bytes32 s0, bytes32 d0, bytes32 s1, bytes32 d1, bytes32 flip) public {
        vm.assume(flip != bytes32(0));
        bytes32 l0 = StandardMerkle.leaf(s0, d0);
        bytes32 l1 = StandardMerkle.leaf(s1, d1);
        _checkpoint(StandardMerkle.node(l0, l1));

        vm.assertTrue(anchor.verifyReading(0, s0, d0, StandardMerkle.one(l1)), "reading 0");
        vm.assertTrue(anchor.verifyReading(0, s1, d1, StandardMerkle.one(l0)), "reading 1");
        vm.assertFalse(anchor.verifyReading(0, s0 ^ flip, d0, StandardMerkle.one(l1)), "tampered salt");
        vm.assertFalse(anchor.verifyReading(0, s0, d0 ^ flip, StandardMerkle.one(l1)), "tampered digest");
    }

    function testFuzz_verifyReading_threeLeaves(bytes32 seed, uint8 which, bytes32 flip) public {
        vm.assume(flip != bytes32(0));
        bytes32[3] memory salts;
        bytes32[3] memory digests;
        bytes32[3] memory leaves;
        for (uint256 i = 0; i < 3; ++i) {
            salts[i] = keccak256(abi.encode(seed, "salt", i));
            digests[i] = keccak256(abi.encode(seed, "digest", i));
            leaves[i] = StandardMerkle.leaf(salts[i], digests[i]);
        }
        (bytes32 a, bytes32 b, bytes32 c) = StandardMerkle.sort3(leaves[0], leaves[1], leaves[2]);
        bytes32 ab = StandardMerkle.node(a, b);
        _checkpoint(StandardMerkle.node(ab, c));

        uint256 k = which % 3;
        bytes32[] memory proof = leaves[k] == c ? StandardMerkle.one(ab) : StandardMerkle.two(leaves[k] == a ? b : a, c);
        vm.assertTrue(anchor.verifyReading(0, salts[k], digests[k], proof), "valid reading");
        vm.assertFalse(anchor.verifyReading(0, salts[k] ^ flip, digests[k], proof), "tampered salt");
        vm.assertFalse(anchor.verifyReading(0, salts[k], digests[k] ^ flip, proof), "tampered digest");
        // The inner node's children never verify as a reading.
        vm.assertFalse(anchor.verifyReading(0, a, b, StandardMerkle.one(c)), "inner node");
    }
}
