// An independent SPEC §1/§2 device: Node's WebCrypto P-256 (ECDSA raw r||s signatures) and a
// hand-written RFC 8785 canonicaliser (JS number and string serialisation are JCS's own).
// stdin: {"device": id, "kind": k, "lot": lot|null, "data": [{...}, ...], "ts": [iso, ...]}
// stdout: {"registration": {...}, "readings": [...]}
import { webcrypto } from "node:crypto";
import fs from "node:fs";

const subtle = webcrypto.subtle;
const canon = (v) =>
  v === null || typeof v !== "object"
    ? JSON.stringify(v)
    : Array.isArray(v)
      ? "[" + v.map(canon).join(",") + "]"
      : "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k])).join(",") + "}";
const b64url = (buf) => Buffer.from(buf).toString("base64url");
const enc = new TextEncoder();

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const keys = await subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
const spki = Buffer.from(await subtle.exportKey("spki", keys.publicKey)).toString("base64");
const pem = "-----BEGIN PUBLIC KEY-----\n" + spki.match(/.{1,64}/g).join("\n") + "\n-----END PUBLIC KEY-----\n";
const sign = async (text) => b64url(await subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, enc.encode(text)));

const registration = {
  id: input.device, alg: "ES256", public_key: pem, kind: input.kind,
  pop: await sign(canon({ device: input.device, public_key: pem, purpose: "pledgeledger/register" })),
};
const readings = [];
let prev = null;
for (const [i, data] of input.data.entries()) {
  const payload = { v: 1, device: input.device, seq: 10 + i * 2, prev, ts: input.ts[i], kind: input.kind, lot: input.lot, data };
  const text = canon(payload);
  readings.push({ payload, alg: "ES256", sig: await sign(text) });
  prev = Buffer.from(await subtle.digest("SHA-256", enc.encode(text))).toString("hex");
}
process.stdout.write(JSON.stringify({ registration, readings }));
