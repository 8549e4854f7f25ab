#!/usr/bin/env python3
# Oracle for ledger/receipt's differential test (refdiff_test.go): ACL receipt
# verification as Microsoft's guide and the azure-confidentialledger SDK
# describe it, on pyca/cryptography (OpenSSL), the library the SDK uses.
# Written for Cloister from the documented algorithm. One JSON case per line
# on stdin ({"receipt": {...} or "receipt_text": "JSON text", "service_cert": "PEM",
# "claims": [...]|null});
# one line out per case: "ok" or "error: <why>".
import base64
import hashlib
import hmac
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SNAKE = {
    "leaf_components": "leafComponents", "claims_digest": "claimsDigest",
    "commit_evidence": "commitEvidence", "write_set_digest": "writeSetDigest",
    "node_id": "nodeId", "service_endorsements": "serviceEndorsements",
    "is_signature_transaction": "isSignatureTransaction",
}


def camel(v):
    if isinstance(v, dict):
        return {SNAKE.get(k, k): camel(x) for k, x in v.items()}
    if isinstance(v, list):
        return [camel(x) for x in v]
    return v


def load_cert(pem):
    if not isinstance(pem, str):
        raise ValueError("certificate not a string")
    c = x509.load_pem_x509_certificate(pem.encode())
    if not isinstance(c.public_key(), ec.EllipticCurvePublicKey):
        raise ValueError("not an EC key")
    return c


def endorsed(endorsee, endorser):
    algo = endorsee.signature_hash_algorithm
    h = hashes.Hash(algo)
    h.update(endorsee.tbs_certificate_bytes)
    endorser.public_key().verify(endorsee.signature, h.finalize(), ec.ECDSA(utils.Prehashed(algo)))


def claims_digest(claims):
    out = len(claims).to_bytes(4, "little")
    for c in claims:
        if c["kind"] == "LedgerEntry":
            e = c["ledgerEntry"]
            if e["protocol"] != "LedgerEntryV1":
                raise ValueError("protocol")
            key = base64.b64decode(e["secretKey"], validate=True)
            d = hashlib.sha256(
                hmac.new(key, e["collectionId"].encode(), hashlib.sha256).digest()
                + hmac.new(key, e["contents"].encode(), hashlib.sha256).digest()
            ).digest()
            out += hashlib.sha256(e["protocol"].encode() + d).digest()
        elif c["kind"] == "ClaimDigest":
            out += hashlib.sha256(c["digest"]["protocol"].encode() + bytes.fromhex(c["digest"]["value"])).digest()
        else:
            raise ValueError("kind")
    return hashlib.sha256(out).hexdigest()


def verify(case):
    if "receipt_text" in case:
        case["receipt"] = json.loads(case["receipt_text"])
    r = camel(case["receipt"])
    if "receipt" in r and "cert" not in r:
        r = r["receipt"]
    claims = case.get("claims")
    lc = r["leafComponents"]
    if claims:
        if claims_digest(claims) != lc["claimsDigest"].lower():
            raise ValueError("claims digest")
    node = load_cert(r["cert"])
    cur = node
    for pem in (r.get("serviceEndorsements") or []) + [case["service_cert"]]:
        e = load_cert(pem)
        endorsed(cur, e)
        cur = e
    leaf = hashlib.sha256(
        bytes.fromhex(lc["writeSetDigest"])
        + hashlib.sha256(lc["commitEvidence"].encode()).digest()
        + bytes.fromhex(lc["claimsDigest"])
    ).digest()
    for p in r["proof"]:
        if len(p) != 1:
            raise ValueError("proof element")
        if "left" in p:
            leaf = hashlib.sha256(bytes.fromhex(p["left"]) + leaf).digest()
        else:
            leaf = hashlib.sha256(leaf + bytes.fromhex(p["right"])).digest()
    spki = node.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if "nodeId" in r and hashlib.sha256(spki).digest() != bytes.fromhex(r["nodeId"]):
        raise ValueError("node id")
    node.public_key().verify(
        base64.b64decode(r["signature"], validate=True), leaf, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    )


for line in sys.stdin:
    try:
        verify(json.loads(line))
        print("ok", flush=False)
    except Exception as e:  # every failure is a verdict, as in the SDK
        print("error: %s: %s" % (type(e).__name__, str(e).replace("\n", " ")[:200]))
sys.stdout.flush()
