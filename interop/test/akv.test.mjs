// Microsoft's Key Vault client (@azure/keyvault-keys), unchanged, against
// `cloister broker serve --tls`: create keys with release policies, get
// them, and releaseKey with a token from `cloister attest serve` whose
// x-ms-runtime keys hold this test's RSA key; the released key is
// unwrapped here with Node's crypto (OpenSSL's RSA-OAEP and
// id-aes256-wrap-pad, an implementation independent of the broker's) and
// checked to be the key (issue 18, item 3).
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import https from "node:https";
import dns from "node:dns";
import {
  constants, createDecipheriv, createPrivateKey, generateKeyPairSync, privateDecrypt, randomBytes,
} from "node:crypto";
import { KeyClient } from "@azure/keyvault-keys";
import { AttestationClient } from "@azure/attestation";
import { compactVerify, importX509, decodeJwt } from "jose";
import { scratch, cloisterBinary, simulator, simQuote, startService, cloister } from "../lib/harness.mjs";

const TOKEN = "akv-interop-" + randomBytes(12).toString("hex");
// The vault's host name: a name under "localhost", so that the SDK's
// challenge check (the vault host must end with "." + the challenge
// resource's host, as *.vault.azure.net does) passes for real: the broker
// derives resource https://localhost from it. It resolves to the loopback
// address through the agent's lookup below.
const VAULT_HOST = "vault.localhost";

/** A TokenCredential (@azure/core-auth's shape) returning the broker's token. */
function credential(token = TOKEN) {
  return { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }) };
}

/** dns.lookup that sends VAULT_HOST to 127.0.0.1 (tls.connect takes it through the agent). */
function lookup(host, opts, cb) {
  if (host === VAULT_HOST) {
    return opts.all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4);
  }
  return dns.lookup(host, opts, cb);
}

/** Reads the RA-TLS certificate a server presents (not yet trusted). */
function peerCertificatePEM(host, port, servername) {
  return new Promise((res, rej) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, servername }, () => {
      const der = s.getPeerCertificate().raw;
      s.end();
      res("-----BEGIN CERTIFICATE-----\n" + der.toString("base64").match(/.{1,64}/g).join("\n") + "\n-----END CERTIFICATE-----\n");
    });
    s.on("error", rej);
  });
}

/**
 * Starts `cloister broker serve --tls` with the attestation service as its
 * one --akv-authority, and attests the broker's RA-TLS certificate with
 * `cloister verify cert` before trusting it.
 */
async function startBroker(bin, sim, dir, authority, authorityCA) {
  const tokenFile = join(dir, "broker-token");
  writeFileSync(tokenFile, TOKEN + "\n", { mode: 0o600 });
  const caFile = join(dir, "authority-ca.pem");
  writeFileSync(caFile, authorityCA);
  // The port is chosen by the broker; the public URL needs it, so listen
  // on a port found free first.
  const port = await new Promise((res) => {
    const srv = tls.createServer().listen(0, "127.0.0.1", () => {
      const p = srv.address().port;
      srv.close(() => res(p));
    });
  });
  const child = spawn(bin, ["broker", "serve", "--tee", "sim-sgx", "--sim-dir", sim.simDir, "--trust-root", sim.root,
    "--listen", `127.0.0.1:${port}`, "--public-url", `https://${VAULT_HOST}:${port}`, "--tls",
    "--admin-token-file", tokenFile, "--akv-authority", authority, "--akv-authority-ca", caFile],
  { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  await new Promise((resolve, reject) => {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      if (log.includes('"key broker listening"')) resolve();
    });
    child.on("exit", (code) => reject(new Error(`broker serve exited ${code} before listening:\n${log}`)));
  });
  const ca = await peerCertificatePEM("127.0.0.1", port, VAULT_HOST);
  const certFile = join(dir, "broker-ratls.pem");
  writeFileSync(certFile, ca);
  const mrenclave = JSON.parse(cloister(bin, ["measure", bin, "--format", "json"])).mrenclave;
  cloister(bin, ["verify", "cert", certFile, "--trust-root", sim.root, "--collateral", sim.collateral, "--mrenclave", mrenclave,
    "--allow-debug"]);
  const stop = () => new Promise((res) => {
    if (child.exitCode !== null) return res();
    child.on("exit", res);
    child.kill("SIGTERM");
  });
  return { url: `https://${VAULT_HOST}:${port}`, ca, stop, log: () => log };
}

/** Unwraps a key_hsm ciphertext: RSA-OAEP of the AES key, then RFC 5649 (OpenSSL's id-aes256-wrap-pad). */
function unwrap(privateKey, enc, ciphertext) {
  const oaepHash = { CKM_RSA_AES_KEY_WRAP: "sha1", RSA_AES_KEY_WRAP_256: "sha256", RSA_AES_KEY_WRAP_384: "sha384" }[enc];
  assert.ok(oaepHash, `enc ${enc}`);
  const k = 256; // the 2048-bit transfer key's size in bytes
  const kek = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, ciphertext.subarray(0, k));
  const d = createDecipheriv("id-aes256-wrap-pad", kek, Buffer.from("A65959A6", "hex"));
  return Buffer.concat([d.update(ciphertext.subarray(k)), d.final()]);
}

/** Opens a release result: checks its signature with x5c[0] (jose), returns the payload and the unwrapped key. */
async function openRelease(value, privateKey) {
  const [h] = value.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url"));
  assert.equal(header.alg, "RS256");
  const pem = "-----BEGIN CERTIFICATE-----\n" + header.x5c[0] + "\n-----END CERTIFICATE-----";
  const { payload } = await compactVerify(value, await importX509(pem, "RS256"));
  const body = JSON.parse(Buffer.from(payload));
  const blob = JSON.parse(Buffer.from(body.response.key.key.key_hsm, "base64url"));
  assert.equal(blob.header.alg, "dir");
  return { body, blob, material: unwrap(privateKey, blob.header.enc, Buffer.from(blob.ciphertext, "base64url")) };
}

describe("@azure/keyvault-keys against cloister broker serve", () => {
  let tmp, bin, sim, attest, broker, enclaveKey, runtime, token;

  before(async () => {
    tmp = scratch();
    bin = cloisterBinary(tmp.dir);
    sim = simulator(bin, tmp.dir);
    attest = await startService(bin, sim, tmp.dir, "akv-authority", []);
    broker = await startBroker(bin, sim, tmp.dir, attest.base, attest.ca);
    // The enclave's transfer key goes into its runtime data, so into the
    // token's x-ms-runtime.keys, as Azure's confidential workloads do.
    enclaveKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = enclaveKey.publicKey.export({ format: "jwk" });
    runtime = Buffer.from(JSON.stringify({ keys: [{ kid: "interop-transfer-key", kty: "RSA", key_ops: ["encrypt"], n: jwk.n, e: jwk.e }] }));
    const client = new AttestationClient(attest.base, { tlsOptions: { ca: attest.ca } });
    const res = await client.attestSgxEnclave(simQuote(bin, sim, tmp.dir, runtime), { runTimeJson: runtime });
    token = res.token.serialize();
    assert.equal(decodeJwt(token)["x-ms-runtime"].keys[0].kid, "interop-transfer-key");
  });

  after(async () => {
    await broker?.stop();
    await attest?.stop();
    tmp?.cleanup();
  });

  const client = (opts = {}) => new KeyClient(broker.url, credential(opts.token), {
    tlsOptions: { ca: broker.ca, lookup }, serviceVersion: opts.serviceVersion,
  });
  const policy = (conditions) => ({
    encodedPolicy: new TextEncoder().encode(JSON.stringify({ version: "1.0.0", anyOf: [{ authority: attest.base, allOf: conditions }] })),
  });
  const simPolicy = () => policy([{ claim: "x-ms-attestation-type", equals: "sim-sgx" }, { claim: "x-ms-sgx-is-debuggable", equals: true }]);

  it("createRsaKey with exportable and a release policy; getKey returns it, policy data base64url both ways", async () => {
    const kc = client();
    const created = await kc.createRsaKey("interop-rsa", { exportable: true, releasePolicy: simPolicy(), keySize: 2048 });
    assert.match(created.id, new RegExp(`^${broker.url}/keys/interop-rsa/[0-9a-f]{32}$`));
    assert.equal(created.properties.exportable, true);
    assert.equal(created.keyType, "RSA");
    const got = await kc.getKey("interop-rsa");
    assert.equal(got.id, created.id);
    assert.equal(got.properties.version, created.properties.version);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(got.properties.releasePolicy.encodedPolicy)),
      JSON.parse(new TextDecoder().decode(simPolicy().encodedPolicy)));
    const byVersion = await kc.getKey("interop-rsa", { version: created.properties.version });
    assert.deepEqual(Buffer.from(byVersion.key.n), Buffer.from(created.key.n));
  });

  it("releaseKey with the attestation token: the key unwraps with the test's private key and is the key", async () => {
    const kc = client();
    const created = await kc.getKey("interop-rsa");
    for (const algorithm of [undefined, "RSA_AES_KEY_WRAP_256", "RSA_AES_KEY_WRAP_384", "CKM_RSA_AES_KEY_WRAP"]) {
      const { value } = await kc.releaseKey("interop-rsa", token, { algorithm });
      const { body, blob, material } = await openRelease(value, enclaveKey.privateKey);
      assert.equal(blob.header.enc, algorithm ?? "CKM_RSA_AES_KEY_WRAP");
      assert.equal(blob.header.kid, "interop-transfer-key");
      assert.equal(body.request.kid, created.id);
      assert.equal(body.response.key.key.kid, created.id);
      const released = createPrivateKey({ key: material, format: "der", type: "pkcs8" }).export({ format: "jwk" });
      assert.equal(released.n, Buffer.from(created.key.n).toString("base64url"), "the released key is the vault's key");
      // Another private key cannot open it.
      const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 });
      await assert.rejects(openRelease(value, stranger.privateKey));
    }
  });

  it("createEcKey and createKey(oct-HSM): released, unwrapped, the same key", async () => {
    const kc = client();
    const ec = await kc.createEcKey("interop-ec", { curve: "P-384", exportable: true, releasePolicy: simPolicy() });
    const { value } = await kc.releaseKey("interop-ec", token, { algorithm: "RSA_AES_KEY_WRAP_256", version: ec.properties.version });
    const jwk = createPrivateKey({ key: (await openRelease(value, enclaveKey.privateKey)).material, format: "der", type: "pkcs8" })
      .export({ format: "jwk" });
    assert.equal(jwk.crv, "P-384");
    assert.equal(jwk.x, Buffer.from(ec.key.x).toString("base64url"));
    const oct = await kc.createKey("interop-oct", "oct-HSM", { keySize: 256, exportable: true, releasePolicy: simPolicy() });
    assert.equal(oct.keyType, "oct-HSM");
    const rel = await kc.releaseKey("interop-oct", token);
    assert.equal((await openRelease(rel.value, enclaveKey.privateKey)).material.length, 32);
  });

  it("the nonce binds the request to the token", async () => {
    // @azure/attestation 1.0 sends no nonce, so this token is asked for
    // over the MAA REST API itself, with a nonce in the body.
    const nonce = "interop-nonce-" + randomBytes(6).toString("hex");
    const body = JSON.stringify({
      quote: simQuote(bin, sim, tmp.dir, runtime).toString("base64url"),
      runtimeData: { data: runtime.toString("base64url"), dataType: "JSON" },
      nonce,
    });
    const withNonce = await new Promise((res, rej) => {
      const req = https.request(`${attest.base}/attest/SgxEnclave?api-version=2022-08-01`,
        { method: "POST", ca: attest.ca, headers: { "content-type": "application/json" } }, (r) => {
          const chunks = [];
          r.on("data", (c) => chunks.push(c));
          r.on("end", () => (r.statusCode === 200 ? res(JSON.parse(Buffer.concat(chunks)).token) : rej(new Error(`attest: ${r.statusCode}`))));
        });
      req.on("error", rej);
      req.end(body);
    });
    assert.equal(decodeJwt(withNonce).nonce, nonce);
    const kc = client();
    const { value } = await kc.releaseKey("interop-rsa", withNonce, { nonce });
    assert.equal((await openRelease(value, enclaveKey.privateKey)).body.request.nonce, nonce);
    await assert.rejects(kc.releaseKey("interop-rsa", withNonce, { nonce: "another" }), (err) => err.statusCode === 403 && /nonce/.test(err.message));
    // A token without a nonce does not pass for one with it.
    await assert.rejects(kc.releaseKey("interop-rsa", token, { nonce }), (err) => err.statusCode === 403);
  });

  it("refusals: a policy that does not match, a non-exportable key, a bad token; never a key", async () => {
    const kc = client();
    await kc.createRsaKey("interop-other-enclave", {
      exportable: true, releasePolicy: policy([{ claim: "x-ms-sgx-mrenclave", equals: "00".repeat(32) }]),
    });
    await assert.rejects(kc.releaseKey("interop-other-enclave", token),
      (err) => err.statusCode === 403 && err.code === "Forbidden" && /x-ms-sgx-mrenclave/.test(err.message));
    await kc.createRsaKey("interop-plain", {});
    await assert.rejects(kc.releaseKey("interop-plain", token), (err) => err.statusCode === 403 && /not exportable/.test(err.message));
    const [h, p] = token.split(".");
    await assert.rejects(kc.releaseKey("interop-rsa", `${h}.${p}.${Buffer.from("forged").toString("base64url")}`),
      (err) => err.statusCode === 403);
    await assert.rejects(kc.createRsaKey("interop-no-policy", { exportable: true }),
      (err) => err.statusCode === 400 && /release_policy/.test(err.message));
    await assert.rejects(kc.getKey("interop-missing"), (err) => err.statusCode === 404 && err.code === "KeyNotFound");
  });

  it("older api-versions; a wrong credential gets 401", async () => {
    const old = client({ serviceVersion: "7.4" });
    const k = await old.createRsaKey("interop-old-api", { exportable: true, releasePolicy: simPolicy() });
    assert.equal((await old.getKey("interop-old-api")).id, k.id);
    assert.ok((await old.releaseKey("interop-old-api", token)).value);
    await assert.rejects(client({ token: "not-the-token" }).getKey("interop-rsa"), (err) => err.statusCode === 401);
  });
});
