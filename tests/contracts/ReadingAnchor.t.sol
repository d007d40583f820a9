// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DeviceRegistry} from "../../contracts/DeviceRegistry.sol";
import {ReadingAnchor} from "../../contracts/ReadingAnchor.sol";
import {IDeviceRegistry} from "../../contracts/interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../../contracts/interfaces/IReadingAnchor.sol";
import {Assertions} from "./utils/Assertions.sol";
import {StandardMerkle} from "./utils/StandardMerkle.sol";

/**
 * @dev Unit and fuzz tests of {ReadingAnchor} (SPEC §3).
 */
contract ReadingAnchorTest is Assertions {
    address internal constant ADMIN = address(0xA11CE);
    address internal constant WRITER = address(0xB0B);
    address internal constant STRANGER = address(0xCAFE);

    DeviceRegistry internal registry;
    ReadingAnchor internal anchor;
    bytes32 internal writerRole;

    function setUp() public {
        registry = new DeviceRegistry(ADMIN, ADMIN);
        anchor = new ReadingAnchor(ADMIN, WRITER, registry);
        writerRole = anchor.WRITER_ROLE();
        vm.label(ADMIN, "ADMIN");
        vm.label(WRITER, "WRITER");
        vm.label(STRANGER, "STRANGER");
    }

    // ---------------------------------------------------------------- helpers

    function _nextHead(bytes32 prevHead, uint256 index, bytes32 root, uint64 count) internal pure returns (bytes32) {
        return keccak256(abi.encode(prevHead, index, root, count));
    }

    function _currentHead() internal view returns (bytes32 h) {
        (, h) = anchor.head();
    }

    function _size() internal view returns (uint256 s) {
        (s,) = anchor.head();
    }

    /// @dev Appends a checkpoint as WRITER on top of the current head.
    function _checkpoint(bytes32 root, uint64 count) internal returns (uint256 index) {
        bytes32 prev = _currentHead();
        vm.prank(WRITER);
        index = anchor.checkpoint(prev, root, count);
    }

    function _root(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("root", i));
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

    function test_constructor_grantsRoles() public view {
        vm.assertEq(writerRole, keccak256("WRITER_ROLE"), "WRITER_ROLE");
        vm.assertTrue(anchor.hasRole(anchor.DEFAULT_ADMIN_ROLE(), ADMIN), "admin has admin role");
        vm.assertTrue(anchor.hasRole(writerRole, WRITER), "writer has writer role");
        vm.assertFalse(anchor.hasRole(writerRole, ADMIN), "admin is not a writer");
        vm.assertFalse(anchor.hasRole(anchor.DEFAULT_ADMIN_ROLE(), WRITER), "writer is not admin");
        vm.assertFalse(anchor.hasRole(writerRole, address(this)), "deployer is not a writer");
        vm.assertEq(anchor.getRoleAdmin(writerRole), anchor.DEFAULT_ADMIN_ROLE(), "writer role admin");
    }

    function test_constructor_emptyChain() public view {
        (uint256 size, bytes32 h) = anchor.head();
        vm.assertEq(size, 0, "size");
        vm.assertEq(h, bytes32(0), "genesis head");
    }

    function test_deviceRegistry_returnsConstructorArg() public view {
        vm.assertEq(address(anchor.deviceRegistry()), address(registry), "deviceRegistry");
    }

    function testFuzz_deviceRegistry_returnsConstructorArg(address reg) public {
        ReadingAnchor other = new ReadingAnchor(ADMIN, WRITER, IDeviceRegistry(reg));
        vm.assertEq(address(other.deviceRegistry()), reg, "deviceRegistry");
    }

    function test_supportsAccessControlInterface() public view {
        vm.assertTrue(anchor.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
    }

    // ---------------------------------------------------------------- checkpoint

    function test_checkpoint_appendsAndReturnsIndex() public {
        bytes32 h0 = bytes32(0);
        vm.prank(WRITER);
        uint256 i0 = anchor.checkpoint(h0, _root(0), 10);
        bytes32 h1 = _nextHead(h0, 0, _root(0), 10);

        vm.prank(WRITER);
        uint256 i1 = anchor.checkpoint(h1, _root(1), 1);
        bytes32 h2 = _nextHead(h1, 1, _root(1), 1);

        vm.prank(WRITER);
        uint256 i2 = anchor.checkpoint(h2, _root(2), type(uint64).max);
        bytes32 h3 = _nextHead(h2, 2, _root(2), type(uint64).max);

        vm.assertEq(i0, 0, "index 0");
        vm.assertEq(i1, 1, "index 1");
        vm.assertEq(i2, 2, "index 2");
        (uint256 size, bytes32 h) = anchor.head();
        vm.assertEq(size, 3, "size");
        vm.assertEq(h, h3, "head");
        vm.assertNotEq(h1, h2, "heads differ");
    }

    function test_checkpoint_emitsCheckpointed() public {
        bytes32 h1 = _nextHead(bytes32(0), 0, _root(0), 7);
        vm.expectEmit(true, true, true, true, address(anchor));
        emit IReadingAnchor.Checkpointed(0, _root(0), 7, bytes32(0), h1);
        vm.prank(WRITER);
        anchor.checkpoint(bytes32(0), _root(0), 7);

        bytes32 h2 = _nextHead(h1, 1, _root(1), 3);
        vm.expectEmit(true, true, true, true, address(anchor));
        emit IReadingAnchor.Checkpointed(1, _root(1), 3, h1, h2);
        vm.prank(WRITER);
        anchor.checkpoint(h1, _root(1), 3);
    }

    function test_checkpoint_sameRootTwiceMakesDistinctCheckpoints() public {
        _checkpoint(_root(0), 5);
        bytes32 h1 = _currentHead();
        _checkpoint(_root(0), 5);
        vm.assertEq(_size(), 2, "size");
        vm.assertEq(anchor.rootOf(0), anchor.rootOf(1), "same root stored twice");
        vm.assertNotEq(_currentHead(), h1, "head moved");
    }

    function test_rootOf_eachIndex() public {
        for (uint256 i = 0; i < 5; ++i) {
            _checkpoint(_root(i), uint64(i + 1));
        }
        for (uint256 i = 0; i < 5; ++i) {
            vm.assertEq(anchor.rootOf(i), _root(i), "rootOf(i)");
        }
    }

    function test_rootOf_emptyChainReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 0, 0));
        anchor.rootOf(0);
    }

    function test_rootOf_sizeReverts() public {
        _checkpoint(_root(0), 1);
        _checkpoint(_root(1), 1);
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 2, 2));
        anchor.rootOf(2);
        vm.expectRevert(
            abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, type(uint256).max, 2)
        );
        anchor.rootOf(type(uint256).max);
    }

    function test_checkpoint_staleHeadReverts() public {
        _checkpoint(_root(0), 1);
        bytes32 h1 = _currentHead();
        _checkpoint(_root(1), 1);
        bytes32 h2 = _currentHead();

        // An older head (a writer that missed checkpoint 1).
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, h2, h1));
        vm.prank(WRITER);
        anchor.checkpoint(h1, _root(2), 1);

        // The genesis head: restarting the chain is refused.
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, h2, bytes32(0)));
        vm.prank(WRITER);
        anchor.checkpoint(bytes32(0), _root(2), 1);

        // Nothing was appended and no root was replaced.
        (uint256 size, bytes32 h) = anchor.head();
        vm.assertEq(size, 2, "size unchanged");
        vm.assertEq(h, h2, "head unchanged");
        vm.assertEq(anchor.rootOf(1), _root(1), "root 1 unchanged");
    }

    function test_checkpoint_forkedHeadReverts() public {
        _checkpoint(_root(0), 1);
        bytes32 h1 = _currentHead();
        // A writer that computed checkpoint 1 with another root holds a forked head.
        bytes32 forked = _nextHead(h1, 1, keccak256("other batch"), 4);
        _checkpoint(_root(1), 4);
        bytes32 h2 = _currentHead();

        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, h2, forked));
        vm.prank(WRITER);
        anchor.checkpoint(forked, _root(2), 1);
    }

    function test_checkpoint_futureHeadReverts() public {
        // The head the chain would have after checkpoint 0 cannot be used before it exists.
        bytes32 future = _nextHead(bytes32(0), 0, _root(0), 1);
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, bytes32(0), future));
        vm.prank(WRITER);
        anchor.checkpoint(future, _root(1), 1);
    }

    function test_checkpoint_zeroRootReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyCheckpoint.selector));
        vm.prank(WRITER);
        anchor.checkpoint(bytes32(0), bytes32(0), 1);
    }

    function test_checkpoint_zeroCountReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyCheckpoint.selector));
        vm.prank(WRITER);
        anchor.checkpoint(bytes32(0), _root(0), 0);
        vm.assertEq(_size(), 0, "size unchanged");
    }

    function test_checkpoint_nonWriterReverts() public {
        address[3] memory callers = [STRANGER, ADMIN, address(this)];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, callers[i], writerRole)
            );
            vm.prank(callers[i]);
            anchor.checkpoint(bytes32(0), _root(0), 1);
        }
        vm.assertEq(_size(), 0, "size unchanged");
    }

    function test_checkpoint_writerRoleIsManagedByAdmin() public {
        vm.prank(ADMIN);
        anchor.grantRole(writerRole, STRANGER);
        vm.prank(STRANGER);
        anchor.checkpoint(bytes32(0), _root(0), 1);

        vm.prank(ADMIN);
        anchor.revokeRole(writerRole, STRANGER);
        bytes32 h1 = _currentHead();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, STRANGER, writerRole)
        );
        vm.prank(STRANGER);
        anchor.checkpoint(h1, _root(1), 1);
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
        _checkpoint(StandardMerkle.node(l0, l1), 2);

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
        _checkpoint(bytes32(uint256(0xdead)), 1); // index 0: an unrelated batch
        _checkpoint(StandardMerkle.node(ab, c), 3); // index 1

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
        _checkpoint(root, 3);

        bytes32[] memory proofOfAb = StandardMerkle.one(c);
        // Sanity: the attack is real against a single-hash leaf.
        vm.assertTrue(MerkleProof.verify(proofOfAb, root, keccak256(abi.encode(a, b))), "attack premise");
        vm.assertFalse(anchor.verifyReading(0, a, b, proofOfAb), "inner node (a, b)");
        vm.assertFalse(anchor.verifyReading(0, b, a, proofOfAb), "inner node (b, a)");
        // The root's own children, with an empty proof.
        vm.assertFalse(anchor.verifyReading(0, ab < c ? ab : c, ab < c ? c : ab, new bytes32[](0)), "root");
    }

    function test_verifyReading_unknownIndexReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, 0, 0));
        anchor.verifyReading(0, bytes32(0), bytes32(0), new bytes32[](0));
    }

    // ---------------------------------------------------------------- fuzz

    function testFuzz_checkpoint_hashChain(bytes32 seed, uint8 n) public {
        n = uint8(_bound(n, 1, 24));
        bytes32 prev = bytes32(0);
        for (uint256 i = 0; i < n; ++i) {
            bytes32 root = keccak256(abi.encode(seed, "root", i));
            uint64 count = uint64(uint256(keccak256(abi.encode(seed, "count", i)))) | 1;
            bytes32 next = _nextHead(prev, i, root, count);

            vm.expectEmit(true, true, true, true, address(anchor));
            emit IReadingAnchor.Checkpointed(i, root, count, prev, next);
            vm.prank(WRITER);
            uint256 index = anchor.checkpoint(prev, root, count);

            (uint256 size, bytes32 h) = anchor.head();
            vm.assertEq(index, i, "index");
            vm.assertEq(size, i + 1, "size");
            vm.assertEq(h, next, "head");
            prev = next;
        }
        for (uint256 i = 0; i < n; ++i) {
            vm.assertEq(anchor.rootOf(i), keccak256(abi.encode(seed, "root", i)), "rootOf");
        }
    }

    function testFuzz_checkpoint_anyNonEmptyCheckpointAccepted(bytes32 root, uint64 count) public {
        vm.assume(root != bytes32(0) && count != 0);
        uint256 index = _checkpoint(root, count);
        vm.assertEq(index, 0, "index");
        vm.assertEq(anchor.rootOf(0), root, "root");
        vm.assertEq(_currentHead(), _nextHead(bytes32(0), 0, root, count), "head");
    }

    function testFuzz_checkpoint_staleHeadReverts(bytes32 claimed, uint8 n, bytes32 root, uint64 count) public {
        n = uint8(_bound(n, 0, 6));
        for (uint256 i = 0; i < n; ++i) {
            _checkpoint(_root(i), 1);
        }
        (uint256 size, bytes32 current) = anchor.head();
        vm.assume(claimed != current);
        vm.assume(root != bytes32(0) && count != 0);

        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorStaleHead.selector, current, claimed));
        vm.prank(WRITER);
        anchor.checkpoint(claimed, root, count);

        (uint256 sizeAfter, bytes32 headAfter) = anchor.head();
        vm.assertEq(sizeAfter, size, "size unchanged");
        vm.assertEq(headAfter, current, "head unchanged");
    }

    function testFuzz_checkpoint_emptyReverts(bytes32 root, uint64 count, bool zeroRoot) public {
        if (zeroRoot) root = bytes32(0);
        else count = 0;
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorEmptyCheckpoint.selector));
        vm.prank(WRITER);
        anchor.checkpoint(bytes32(0), root, count);
    }

    function testFuzz_checkpoint_unauthorizedReverts(address caller, bytes32 prevHead, bytes32 root, uint64 count)
        public
    {
        vm.assume(caller != WRITER);
        _checkpoint(_root(0), 1);
        (uint256 size, bytes32 h) = anchor.head();
        if (uint256(prevHead) % 2 == 0) prevHead = h; // half the time, a perfectly valid checkpoint

        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, caller, writerRole)
        );
        vm.prank(caller);
        anchor.checkpoint(prevHead, root, count);

        (uint256 sizeAfter, bytes32 headAfter) = anchor.head();
        vm.assertEq(sizeAfter, size, "size unchanged");
        vm.assertEq(headAfter, h, "head unchanged");
    }

    function testFuzz_rootOf_unknownIndexReverts(uint256 index, uint8 n) public {
        n = uint8(_bound(n, 0, 6));
        for (uint256 i = 0; i < n; ++i) {
            _checkpoint(_root(i), 1);
        }
        index = _bound(index, n, type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(IReadingAnchor.ReadingAnchorUnknownIndex.selector, index, n));
        anchor.rootOf(index);
    }

    function testFuzz_verifyReading_twoLeaves(bytes32 s0, bytes32 d0, bytes32 s1, bytes32 d1, bytes32 flip) public {
        vm.assume(flip != bytes32(0));
        bytes32 l0 = StandardMerkle.leaf(s0, d0);
        bytes32 l1 = StandardMerkle.leaf(s1, d1);
        _checkpoint(StandardMerkle.node(l0, l1), 2);

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
        _checkpoint(StandardMerkle.node(ab, c), 3);

        uint256 k = which % 3;
        bytes32[] memory proof = leaves[k] == c ? StandardMerkle.one(ab) : StandardMerkle.two(leaves[k] == a ? b : a, c);
        vm.assertTrue(anchor.verifyReading(0, salts[k], digests[k], proof), "valid reading");
        vm.assertFalse(anchor.verifyReading(0, salts[k] ^ flip, digests[k], proof), "tampered salt");
        vm.assertFalse(anchor.verifyReading(0, salts[k], digests[k] ^ flip, proof), "tampered digest");
        // The inner node's children never verify as a reading.
        vm.assertFalse(anchor.verifyReading(0, a, b, StandardMerkle.one(c)), "inner node");
    }
}
