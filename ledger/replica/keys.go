package replica

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloister-dev/cloister/ledger"
)

// ErrKeys: the sealed key record, or the shared secrets a joining node
// received, do not open or decode.
var ErrKeys = errors.New("replica: keys")

// keysKey is the host key of the node's key record, sealed to the enclave
// (seal.PolicyEnclave): a node running other code cannot open it.
const keysKey = "replica/keys"

// shared is what every node of one service holds alike: the service and
// node identity (so a receipt from any node verifies with the one service
// certificate, and every node signs the same tree roots deterministically)
// and the ledger secret the commit evidence and claim keys derive from.
// It is created by the first node and handed to a joining node only over
// mutually attested TLS, once its evidence satisfied the node policy.
type shared struct {
	view   uint64
	secret [32]byte
	id     *ledger.Identity
}

// nodeKeys is the sealed key record: the shared secrets plus this node's
// own storage key and raft id.
type nodeKeys struct {
	storage [32]byte
	raftID  uint64
	shared  shared
}

func encodeShared(b []byte, s *shared) ([]byte, error) {
	skey, err := x509.MarshalPKCS8PrivateKey(s.id.ServiceKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	nkey, err := x509.MarshalPKCS8PrivateKey(s.id.NodeKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	b = append(b, "CRS1"...)
	b = binary.BigEndian.AppendUint64(b, s.view)
	b = append(b, s.secret[:]...)
	for _, f := range [][]byte{skey, nkey, s.id.ServiceCert.Raw, s.id.NodeCert.Raw} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	clear(skey)
	clear(nkey)
	return b, nil
}

// decodeShared decodes encodeShared's output from the front of b and
// returns the rest.
func decodeShared(b []byte) (*shared, []byte, error) {
	if len(b) < 4+8+32 || string(b[:4]) != "CRS1" {
		return nil, nil, fmt.Errorf("%w: not a shared-secrets record", ErrKeys)
	}
	s := &shared{view: binary.BigEndian.Uint64(b[4:12]), secret: [32]byte(b[12:44])}
	b = b[44:]
	var f [4][]byte
	for i := range f {
		if len(b) < 4 {
			return nil, nil, fmt.Errorf("%w: shared secrets truncated", ErrKeys)
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, nil, fmt.Errorf("%w: shared secrets truncated", ErrKeys)
		}
		f[i], b = bytes.Clone(b[4:4+n]), b[4+n:]
	}
	id := &ledger.Identity{}
	var err error
	if id.ServiceKey, err = ecKey(f[0]); err != nil {
		return nil, nil, err
	}
	if id.NodeKey, err = ecKey(f[1]); err != nil {
		return nil, nil, err
	}
	if id.ServiceCert, err = x509.ParseCertificate(f[2]); err != nil {
		return nil, nil, fmt.Errorf("%w: service certificate: %w", ErrKeys, err)
	}
	if id.NodeCert, err = x509.ParseCertificate(f[3]); err != nil {
		return nil, nil, fmt.Errorf("%w: node certificate: %w", ErrKeys, err)
	}
	if !id.ServiceKey.PublicKey.Equal(id.ServiceCert.PublicKey) || !id.NodeKey.PublicKey.Equal(id.NodeCert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: keys do not match their certificates", ErrKeys)
	}
	if err := id.NodeCert.CheckSignatureFrom(id.ServiceCert); err != nil {
		return nil, nil, fmt.Errorf("%w: node certificate not issued by the service key: %w", ErrKeys, err)
	}
	s.id = id
	return s, b, nil
}

func ecKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an ECDSA key", ErrKeys)
	}
	return ek, nil
}

func encodeNodeKeys(k *nodeKeys) ([]byte, error) {
	b := append([]byte("CRK1"), k.storage[:]...)
	b = binary.BigEndian.AppendUint64(b, k.raftID)
	return encodeShared(b, &k.shared)
}

func decodeNodeKeys(b []byte) (*nodeKeys, error) {
	if len(b) < 4+32+8 || string(b[:4]) != "CRK1" {
		return nil, fmt.Errorf("%w: not a key record", ErrKeys)
	}
	k := &nodeKeys{storage: [32]byte(b[4:36]), raftID: binary.BigEndian.Uint64(b[36:44])}
	s, rest, err := decodeShared(b[44:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: key record has %d trailing bytes", ErrKeys, len(rest))
	}
	k.shared = *s
	return k, nil
}
