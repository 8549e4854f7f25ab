// Harness for the interop tests: builds (or takes) the cloister binary,
// prepares a simulator, starts `cloister attest serve --tls` and attests its
// RA-TLS certificate with `cloister verify cert` before trusting it.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import tls from "node:tls";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A scratch directory removed by cleanup(). */
export function scratch() {
  const dir = mkdtempSync(join(tmpdir(), "cloister-interop-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The cloister binary: $CLOISTER_BIN when set (.ci/run builds it once),
 * else built from this checkout into dir.
 */
export function cloisterBinary(dir) {
  if (process.env.CLOISTER_BIN) return resolve(process.env.CLOISTER_BIN);
  const out = join(dir, "cloister");
  execFileSync("go", ["build", "-o", out, "./cmd/cloister"], { cwd: repo, stdio: ["ignore", "inherit", "inherit"] });
  return out;
}

/** Runs cloister with args and returns its standard output (throws on a non-zero exit). */
export function cloister(bin, args, opts = {}) {
  return execFileSync(bin, args, { encoding: opts.encoding ?? "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** A simulator directory with its root and collateral written out. */
export function simulator(bin, dir) {
  const simDir = join(dir, "sim");
  const root = join(dir, "sim-root.pem");
  writeFileSync(root, cloister(bin, ["sim", "root", "--sim-dir", simDir]));
  const collateral = join(dir, "sim-collateral.json");
  writeFileSync(collateral, cloister(bin, ["sim", "collateral", "--sim-dir", simDir]));
  return { simDir, root, collateral };
}

/** sha256 of data, as a Buffer. */
export function sha256(data) {
  return createHash("sha256").update(data).digest();
}

/**
 * A sim-sgx quote whose report_data[0:32] is SHA-256(runtimeData), made by
 * `cloister quote`, as bytes.
 */
export function simQuote(bin, sim, dir, runtimeData) {
  const out = join(dir, `quote-${sha256(runtimeData).toString("hex").slice(0, 16)}.bin`);
  cloister(bin, ["quote", "--tee", "sim-sgx", "--sim-dir", sim.simDir, "--report-data", sha256(runtimeData).toString("hex"), "--out", out]);
  return readFileSync(out);
}

/** An OpenEnclave report: the 16-byte OE header (version 1, type 2 remote, size) and the quote. */
export function openEnclaveReport(quote) {
  const header = Buffer.alloc(16);
  header.writeUInt32LE(1, 0);
  header.writeUInt32LE(2, 4);
  header.writeBigUInt64LE(BigInt(quote.length), 8);
  return Buffer.concat([header, quote]);
}

/**
 * Starts `cloister attest serve --tls` with extra args and resolves once it
 * listens: { base, ca, stop }. ca is the service's RA-TLS certificate (PEM),
 * trusted only after `cloister verify cert` attested it (sim root, sim
 * collateral, the service's MRENCLAVE = the binary's measurement).
 */
export async function startService(bin, sim, dir, name, extra) {
  const child = spawn(bin, ["attest", "serve", "--tee", "sim-sgx", "--sim-dir", sim.simDir, "--addr", "127.0.0.1:0",
    "--tls", "--trust-root", sim.root, "--key-rotation", "0", ...extra], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const addr = await new Promise((resolveAddr, reject) => {
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      log += chunk;
      for (const line of log.split("\n")) {
        try {
          const rec = JSON.parse(line);
          if (rec.msg === "attestation service listening" && rec.addr) resolveAddr(rec.addr);
        } catch {
          // not a complete JSON line yet
        }
      }
    });
    child.on("exit", (code) => reject(new Error(`attest serve (${name}) exited ${code} before listening:\n${log}`)));
  });
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  // Fetch the certificate without trusting it, then attest it.
  const der = await new Promise((res, rej) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, servername: "localhost" }, () => {
      const raw = s.getPeerCertificate().raw;
      s.end();
      res(raw);
    });
    s.on("error", rej);
  });
  // PEM by hand: X509Certificate#toString re-encodes, and drops the
  // evidence extension of this certificate.
  const ca = "-----BEGIN CERTIFICATE-----\n" + der.toString("base64").match(/.{1,64}/g).join("\n") + "\n-----END CERTIFICATE-----\n";
  const certFile = join(dir, `${name}-ratls.pem`);
  writeFileSync(certFile, ca);
  const mrenclave = JSON.parse(cloister(bin, ["measure", bin, "--format", "json"])).mrenclave;
  cloister(bin, ["verify", "cert", certFile, "--trust-root", sim.root, "--collateral", sim.collateral, "--mrenclave", mrenclave,
    "--allow-debug"]); // simulator enclaves are debug enclaves
  const stop = () => new Promise((res) => {
    if (child.exitCode !== null) return res();
    child.on("exit", res);
    child.kill("SIGTERM");
  });
  return { base: `https://${addr}`, ca, stop, log: () => log };
}

/** A self-signed RSA policy-signing certificate and key (PEM), made with openssl. */
export function policySigner(dir, cn) {
  const key = join(dir, `${cn}.key`);
  const cert = join(dir, `${cn}.pem`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
    "-subj", `/CN=${cn}`, "-days", "2"], { stdio: "ignore" });
  return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8"), certFile: cert };
}
