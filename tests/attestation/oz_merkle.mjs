// Reference implementation for tests: OpenZeppelin's own merkle-tree package.
// stdin: {"values": [[salt, digest], ...], "dump": <our dump or null>}
// stdout: {"dump": ..., "proofs": [...], "loadedRoot": <root of StandardMerkleTree.load(dump)>, "verified": [...]}
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import fs from "node:fs";

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(input.values, ["bytes32", "bytes32"]);
const out = { dump: tree.dump(), proofs: input.values.map((_, i) => tree.getProof(i)) };
if (input.dump) {
  const loaded = StandardMerkleTree.load(input.dump); // validates the whole tree
  out.loadedRoot = loaded.root;
  out.verified = input.dump.values.map((v, i) =>
    StandardMerkleTree.verify(loaded.root, ["bytes32", "bytes32"], v.value, loaded.getProof(i)),
  );
}
if (input.bundles) {
  out.bundleVerified = input.bundles.map((b) => StandardMerkleTree.verify(b.root, ["bytes32", "bytes32"], [b.salt, b.digest], b.proof));
}
process.stdout.write(JSON.stringify(out));
