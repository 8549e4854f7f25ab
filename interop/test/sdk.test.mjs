// Microsoft's JavaScript client for Azure Attestation (@azure/attestation)
// and jose against `cloister attest serve --tls` on the simulator: every
// call a user of the SDK makes must work unchanged (issue 13, item 5).
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AttestationClient,
  AttestationAdministrationClient,
  KnownAttestationType,
  createAttestationPolicyToken,
} from "@azure/attestation";
import { isTokenCredential } from "@azure/core-auth";
import { createRemoteJWKSet, jwtVerify, customFetch, decodeJwt } from "jose";
import {
  scratch, cloisterBinary, simulator, simQuote, openEnclaveReport, startService, policySigner, sha256,
} from "../lib/harness.mjs";

const ADMIN_TOKEN = "interop-admin-token-" + Math.random().toString(36).slice(2);

/** A TokenCredential (@azure/core-auth's shape) that returns the admin token. */
function adminCredential(token = ADMIN_TOKEN) {
  const cred = { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }) };
  assert.ok(isTokenCredential(cred), "the SDK must see a TokenCredential");
  return cred;
}

/**
 * The SDK's pipeline options: trust the attested RA-TLS certificate (the
 * pipeline's tlsOptions become the https.Agent's options), and have the SDK
 * validate every token it gets against /certs with the expected issuer.
 */
function sdkOptions(svc, expectedIssuer = svc.base) {
  return {
    tlsOptions: { ca: svc.ca },
    validationOptions: {
      validateToken: true, validateExpirationTime: true, validateNotBeforeTime: true,
      validateIssuer: true, expectedIssuer,
    },
  };
}

/** jose's fetch, over https.request so that it trusts the attested certificate. */
function pinnedFetch(ca) {
  return (url, init) => new Promise((resolve, reject) => {
    const req = https.request(url, { method: init.method, headers: Object.fromEntries(init.headers), ca, signal: init.signal }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: res.headers })));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("@azure/attestation against cloister attest serve", () => {
  let tmp, bin, sim, svc, isolated, signer, second;

  before(async () => {
    tmp = scratch();
    bin = cloisterBinary(tmp.dir);
    sim = simulator(bin, tmp.dir);
    const tokenFile = join(tmp.dir, "admin-token");
    writeFileSync(tokenFile, ADMIN_TOKEN + "\n", { mode: 0o600 });
    signer = policySigner(tmp.dir, "interop-policy-signer");
    second = policySigner(tmp.dir, "interop-second-signer");
    svc = await startService(bin, sim, tmp.dir, "aad", ["--admin-token-file", tokenFile, "--state", join(tmp.dir, "state-aad")]);
    isolated = await startService(bin, sim, tmp.dir, "isolated", ["--admin-token-file", tokenFile,
      "--state", join(tmp.dir, "state-isolated"), "--policy-signer", signer.certFile]);
  });

  after(async () => {
    await svc?.stop();
    await isolated?.stop();
    tmp?.cleanup();
  });

  it("discovery: issuer and jwks_uri are the service's URL", async () => {
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const meta = await client.getOpenIdMetadata();
    assert.equal(meta.issuer, svc.base);
    assert.equal(meta.jwks_uri, svc.base + "/certs");
    const signers = await client.getAttestationSigners();
    assert.ok(signers.length >= 1 && signers[0].certificates.length === 2, "signing and RA-TLS certificates in x5c");
  });

  it("attestSgxEnclave with binary runtime data", async () => {
    const runtime = Buffer.from("binary runtime data \x00\x01\x02");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const res = await client.attestSgxEnclave(quote, { runTimeData: runtime });
    const body = res.body;
    assert.equal(body.issuer, svc.base);
    assert.deepEqual(Buffer.from(body.enclaveHeldData), runtime);
    assert.equal(body.verifierType, "sim-sgx");
    // x-ms-sgx-collateral, as MAA emits it; quotehash is the quote we sent.
    assert.equal(body.sgxCollateral.quotehash, sha256(quote).toString("hex"));
    for (const k of ["qeidcertshash", "qeidcrlhash", "qeidhash", "tcbinfocertshash", "tcbinfocrlhash", "tcbinfohash"]) {
      assert.match(body.sgxCollateral[k] ?? "", /^[0-9a-f]{64}$/, k);
    }
  });

  it("attestSgxEnclave with JSON runtime data", async () => {
    const runtime = Buffer.from(JSON.stringify({ jwk: { kty: "EC", crv: "P-256" }, n: 1 }));
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const res = await client.attestSgxEnclave(quote, { runTimeJson: runtime });
    assert.deepEqual(res.body.runTimeClaims, { jwk: { kty: "EC", crv: "P-256" }, n: 1 });
  });

  it("attestOpenEnclave", async () => {
    const runtime = Buffer.from("open enclave runtime data");
    const report = openEnclaveReport(simQuote(bin, sim, tmp.dir, runtime));
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const res = await client.attestOpenEnclave(report, { runTimeData: runtime });
    assert.deepEqual(Buffer.from(res.body.enclaveHeldData), runtime);
    assert.equal(res.body.sgxCollateral.quotehash, sha256(report).toString("hex"));
  });

  it("attestSgxEnclave with a draft policy: its claims, in an unsigned token, and the stored policy untouched", async () => {
    const runtime = Buffer.from("draft");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const draft = 'version=1.0; authorizationrules { => permit(); }; issuancerules { => issue(type="draft", value="yes"); };';
    const res = await client.attestSgxEnclave(quote, { runTimeData: runtime, draftPolicyForAttestation: draft });
    // MAA answers a draft-policy attestation with an unsigned JWT (alg none):
    // it must never pass for a token of the service.
    assert.equal(res.token.algorithm, "none");
    assert.equal(res.body.policyClaims.draft, "yes");
    assert.deepEqual(Buffer.from(res.body.enclaveHeldData), runtime);
    const meta = await client.getOpenIdMetadata();
    const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), { [customFetch]: pinnedFetch(svc.ca) });
    await assert.rejects(jwtVerify(res.token.serialize(), jwks, { issuer: meta.issuer }));
    // The next ordinary attestation is judged by the stored policy again.
    const again = await client.attestSgxEnclave(quote, { runTimeData: runtime });
    assert.notEqual(again.token.algorithm, "none");
    assert.equal(again.body.policyClaims.draft, undefined);
  });

  it("token validation options: the callback sees the signer the token's kid names", async () => {
    const runtime = Buffer.from("callback");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const seen = [];
    const client = new AttestationClient(svc.base, {
      tlsOptions: { ca: svc.ca },
      validationOptions: {
        validateToken: true, validateExpirationTime: true, validateNotBeforeTime: true, timeValidationSlack: 0,
        validateIssuer: true, expectedIssuer: svc.base,
        validateAttestationToken: (token, signer) => { seen.push({ token, signer }); return []; },
      },
    });
    const res = await client.attestSgxEnclave(quote, { runTimeData: runtime });
    assert.equal(seen.length, 1);
    const { token, signer } = seen[0];
    const signers = await client.getAttestationSigners();
    assert.ok(signer, "the SDK found the signing certificate by kid");
    assert.equal(signer.keyId, token.keyId);
    assert.ok(signers.some((s) => s.keyId === token.keyId && s.certificates[0] === signer.certificates[0]));
    assert.ok(token.expiresOn > token.issuedAt && token.notBefore <= token.issuedAt, "exp after iat, nbf not after iat");
    assert.equal(res.body.uniqueId.length > 0, true, "jti");
    assert.equal(res.body.version, "1.0", "x-ms-ver");
    assert.equal(res.body.isDebuggable, true);
    assert.match(res.body.mrEnclave, /^[0-9a-f]{64}$/);
    assert.equal(typeof res.body.svn, "number");
    assert.equal(typeof res.body.productId, "number");
    assert.equal(res.body.policyHash.length, 32, "x-ms-policy-hash is base64url of SHA-256");
    // A callback's problems fail the call.
    const refusing = new AttestationClient(svc.base, {
      tlsOptions: { ca: svc.ca },
      validationOptions: { validateToken: true, validateAttestationToken: () => ["refused by the relying party"] },
    });
    await assert.rejects(refusing.attestSgxEnclave(quote, { runTimeData: runtime }), /refused by the relying party/);
  });

  it("initTimeData an enclave was not created with is refused, with the reason", async () => {
    const runtime = Buffer.from("init");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    await assert.rejects(client.attestSgxEnclave(quote, { runTimeData: runtime, initTimeData: Buffer.from("config") }),
      (err) => err.statusCode === 400 && /initTimeData/.test(err.message));
  });

  it("Tpm, which Cloister does not serve: a 404 CloudError naming the types it does", async () => {
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    await assert.rejects(client.attestTpm(JSON.stringify({ payload: { type: "aikcert" } })),
      (err) => err.statusCode === 404 && /SgxEnclave/.test(err.message));
    const admin = new AttestationAdministrationClient(svc.base, adminCredential(), sdkOptions(svc));
    await assert.rejects(admin.getPolicy(KnownAttestationType.Tpm), (err) => err.statusCode === 404 && /SgxEnclave/.test(err.message));
  });

  it("the SDK's own validation refuses a wrong issuer", async () => {
    const runtime = Buffer.from("x");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc, "https://someone-else.example"));
    await assert.rejects(client.attestSgxEnclave(quote, { runTimeData: runtime }), /expected issuer/);
  });

  it("jose validates tokens against jwks_uri (createRemoteJWKSet)", async () => {
    const runtime = Buffer.from("jose");
    const quote = simQuote(bin, sim, tmp.dir, runtime);
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const res = await client.attestSgxEnclave(quote, { runTimeData: runtime });
    const token = res.token.serialize();
    const meta = await client.getOpenIdMetadata();
    const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), { [customFetch]: pinnedFetch(svc.ca) });
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: meta.issuer, algorithms: ["RS256"] });
    assert.equal(protectedHeader.jku, meta.jwks_uri);
    assert.equal(payload["x-ms-sgx-ehd"], runtime.toString("base64url"));
    // A token whose payload was changed does not verify.
    const [h, , s] = token.split(".");
    const forged = [h, Buffer.from(JSON.stringify({ ...decodeJwt(token), "x-ms-sgx-is-debuggable": !payload["x-ms-sgx-is-debuggable"] })).toString("base64url"), s].join(".");
    await assert.rejects(jwtVerify(forged, jwks, { issuer: meta.issuer }), /signature verification failed/);
    await assert.rejects(jwtVerify(token, jwks, { issuer: "https://someone-else.example" }), /"iss" claim/);
  });

  it("getPolicy, setPolicy unsigned and signed, resetPolicy", async () => {
    const admin = new AttestationAdministrationClient(svc.base, adminCredential(), sdkOptions(svc));
    const initial = await admin.getPolicy(KnownAttestationType.SgxEnclave);
    assert.match(initial.body, /authorizationrules/);

    const unsigned = "version=1.0; authorizationrules { => permit(); }; issuancerules { => issue(type=\"interop\", value=\"unsigned\"); };";
    const set = await admin.setPolicy(KnownAttestationType.SgxEnclave, unsigned);
    assert.equal(set.body.policyResolution, "Updated");
    // The check the SDK's README gives: policyTokenHash is SHA-256 of the JWS the SDK sent.
    assert.deepEqual(Buffer.from(set.body.policyTokenHash), sha256(createAttestationPolicyToken(unsigned).serialize()));
    assert.equal((await admin.getPolicy(KnownAttestationType.SgxEnclave)).body, unsigned);

    const signed = "version=1.0; authorizationrules { => permit(); }; issuancerules { => issue(type=\"interop\", value=\"signed\"); };";
    const setSigned = await admin.setPolicy(KnownAttestationType.SgxEnclave, signed, { privateKey: signer.key, certificate: signer.cert });
    assert.equal(setSigned.body.policyResolution, "Updated");
    assert.deepEqual(Buffer.from(setSigned.body.policyTokenHash),
      sha256(createAttestationPolicyToken(signed, signer.key, signer.cert).serialize()), "RS256 signatures are deterministic");
    assert.ok(setSigned.body.policySigner?.certificates?.length === 1, "policy signer reported");
    assert.equal((await admin.getPolicy(KnownAttestationType.SgxEnclave)).body, signed);

    // The policy is in force: its issued claim is in the next token.
    const runtime = Buffer.from("policy");
    const client = new AttestationClient(svc.base, sdkOptions(svc));
    const res = await client.attestSgxEnclave(simQuote(bin, sim, tmp.dir, runtime), { runTimeData: runtime });
    assert.equal(res.body.policyClaims.interop, "signed");

    const reset = await admin.resetPolicy(KnownAttestationType.SgxEnclave);
    assert.equal(reset.body.policyResolution, "Removed");
    assert.equal((await admin.getPolicy(KnownAttestationType.SgxEnclave)).body, initial.body);
  });

  it("management refuses a wrong admin token", async () => {
    const admin = new AttestationAdministrationClient(svc.base, adminCredential("not-the-token"), sdkOptions(svc));
    await assert.rejects(admin.getPolicy(KnownAttestationType.SgxEnclave), (err) => err.statusCode === 401);
    await assert.rejects(admin.setPolicy(KnownAttestationType.SgxEnclave, "version=1.0; authorizationrules { => permit(); };"),
      (err) => err.statusCode === 401);
  });

  it("isolated mode: get, add and remove policy management certificates", async () => {
    const admin = new AttestationAdministrationClient(isolated.base, adminCredential(), sdkOptions(isolated));
    const fingerprints = async () => (await admin.getPolicyManagementCertificates()).body
      .map((s) => sha256(Buffer.from(s.certificates[0].replace(/-----[^-]+-----|\s/g, ""), "base64")).toString("hex"));
    const der = (pem) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const fp = (pem) => sha256(der(pem)).toString("hex");
    assert.deepEqual(await fingerprints(), [fp(signer.cert)]);

    // Unsigned policies are refused in isolated mode; signed ones pass.
    await assert.rejects(admin.setPolicy(KnownAttestationType.SgxEnclave, "version=1.0; authorizationrules { => permit(); };"),
      (err) => err.statusCode === 403);
    const ok = await admin.setPolicy(KnownAttestationType.SgxEnclave, "version=1.0; authorizationrules { => permit(); };",
      { privateKey: signer.key, certificate: signer.cert });
    assert.equal(ok.body.policyResolution, "Updated");

    const added = await admin.addPolicyManagementCertificate(second.cert, signer.key, signer.cert);
    assert.equal(added.body.certificateResolution, "IsPresent");
    // x-ms-certificate-thumbprint: hex SHA-1 of the certificate's DER, as MAA's models define it.
    assert.equal(added.body.certificateThumbprint.toLowerCase(), createHash("sha1").update(der(second.cert)).digest("hex"));
    assert.deepEqual((await fingerprints()).sort(), [fp(signer.cert), fp(second.cert)].sort());

    // A stranger cannot add itself, nor remove a trusted signer.
    const stranger = policySigner(tmp.dir, "interop-stranger");
    await assert.rejects(admin.addPolicyManagementCertificate(stranger.cert, stranger.key, stranger.cert), (err) => err.statusCode === 403);
    await assert.rejects(admin.removePolicyManagementCertificate(second.cert, stranger.key, stranger.cert), (err) => err.statusCode === 403);

    const removed = await admin.removePolicyManagementCertificate(second.cert, signer.key, signer.cert);
    assert.equal(removed.body.certificateResolution, "IsAbsent");
    assert.deepEqual(await fingerprints(), [fp(signer.cert)]);
    const reset = await admin.resetPolicy(KnownAttestationType.SgxEnclave, { privateKey: signer.key, certificate: signer.cert });
    assert.equal(reset.body.policyResolution, "Removed");
  });
});
