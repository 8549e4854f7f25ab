package receipt

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// checkCertificateDER walks a certificate's DER structure and refuses what
// Go's crypto/x509 lets pass but the reference's parser (pyca/cryptography,
// rust-asn1) refuses: data after the TBS certificate's last field, inside a
// name's attribute, in the public key info or in an extension, and a
// signature BIT STRING with unused bits (which Go would shift and the
// reference would read unshifted). Found by the differential against the
// reference's stack (refdiff_test.go). Field contents are left to x509.
func checkCertificateDER(der []byte) error {
	in := cryptobyte.String(der)
	var cert, tbs, alg cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return errors.New("certificate: not one DER SEQUENCE")
	}
	if !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) || !cert.ReadASN1(&alg, cbasn1.SEQUENCE) {
		return errors.New("certificate: malformed")
	}
	var sig cryptobyte.String
	if !cert.ReadASN1(&sig, cbasn1.BIT_STRING) || !cert.Empty() {
		return errors.New("certificate: malformed signature or data after it")
	}
	if len(sig) == 0 || sig[0] != 0 {
		return errors.New("certificate: signature BIT STRING with unused bits")
	}
	var version, serial, sigAlg, issuer, validity, subject, spki cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&serial, cbasn1.INTEGER) ||
		!tbs.ReadASN1(&sigAlg, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&spki, cbasn1.SEQUENCE) {
		return errors.New("certificate: malformed TBS")
	}
	if err := checkName(issuer); err != nil {
		return errors.New("certificate: issuer: " + err.Error())
	}
	if err := checkName(subject); err != nil {
		return errors.New("certificate: subject: " + err.Error())
	}
	var keyAlg, key cryptobyte.String
	if !spki.ReadASN1(&keyAlg, cbasn1.SEQUENCE) || !spki.ReadASN1(&key, cbasn1.BIT_STRING) || !spki.Empty() {
		return errors.New("certificate: malformed public key info")
	}
	var skip cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&skip, &present, cbasn1.Tag(1).ContextSpecific()) ||
		!tbs.ReadOptionalASN1(&skip, &present, cbasn1.Tag(2).ContextSpecific()) {
		return errors.New("certificate: malformed unique identifier")
	}
	var exts cryptobyte.String
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) || !tbs.Empty() {
		return errors.New("certificate: data after the TBS certificate's fields")
	}
	if present {
		var list cryptobyte.String
		if !exts.ReadASN1(&list, cbasn1.SEQUENCE) || !exts.Empty() {
			return errors.New("certificate: malformed extensions")
		}
		for !list.Empty() {
			var ext, oid, value cryptobyte.String
			if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
				return errors.New("certificate: malformed extension")
			}
			if ext.PeekASN1Tag(cbasn1.BOOLEAN) {
				var crit cryptobyte.String
				ext.ReadASN1(&crit, cbasn1.BOOLEAN)
			}
			if !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
				return errors.New("certificate: malformed extension")
			}
		}
	}
	return nil
}

// checkName walks an RDNSequence: SETs of SEQUENCE { OID, value } with
// nothing else in them.
func checkName(name cryptobyte.String) error {
	for !name.Empty() {
		var rdn cryptobyte.String
		if !name.ReadASN1(&rdn, cbasn1.SET) {
			return errors.New("malformed relative distinguished name")
		}
		for !rdn.Empty() {
			var atv, oid, value cryptobyte.String
			var tag cbasn1.Tag
			if !rdn.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
				!atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return errors.New("malformed attribute")
			}
		}
	}
	return nil
}
