// Reference implementation for tests: OpenZeppelin's own merkle-tree package.
// stdin: {"values": [[salt, digest], ...] or null, "dump": <our dump or null>, "bundles": [...],
//         "multiIndices": [value index, ...], "multiproofs": [{"root", "multiproof"}, ...]}
// stdout: {"dump": ..., "proofs": [...], "loadedRoot": <root of StandardMerkleTree.load(dump)>, "verified": [...],
//          "multiproof": <tree.getMultiProof(multiIndices)>, "multiVerified": [StandardMerkleTree.verifyMultiProof(...)]}
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import fs from "node:fs";

const ENCODING = ["bytes32", "bytes32"];
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const out = {};
if (input.values) {
  const tree = StandardMerkleTree.of(input.values, ENCODING);
  out.dump = tree.dump();
  out.proofs = input.values.map((_, i) => tree.getProof(i));
  if (input.multiIndices) out.multiproof = tree.getMultiProof(input.multiIndices);
}
if (input.dump) {
  const loaded = StandardMerkleTree.load(input.dump); // validates the whole tree
  out.loadedRoot = loaded.root;
  out.verified = input.dump.values.map((v, i) => StandardMerkleTree.verify(loaded.root, ENCODING, v.value, loaded.getProof(i)));
}
if (input.bundles) {
  out.bundleVerified = input.bundles.map((b) => StandardMerkleTree.verify(b.root, ENCODING, [b.salt, b.digest], b.proof));
}
if (input.multiproofs) {
  out.multiVerified = input.multiproofs.map(({ root, multiproof }) => {
    try {
      return StandardMerkleTree.verifyMultiProof(root, ENCODING, multiproof);
    } catch {
      return false; // malformed: the library refuses it
    }
  });
}
process.stdout.write(JSON.stringify(out));
