package appsign

import (
	"crypto/rsa"
	"flag"
	"os"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	sampleKeyFile = "testdata/intel_sgx_sdk_sample_key.pem"
	appFile       = "testdata/app.bin"
	configFile    = "testdata/enclave.json"
	sigFile       = "testdata/app.sig"

	// sampleMRSIGNER is what SGX tooling reports for the Intel SDK sample
	// key (see testdata/README.md).
	sampleMRSIGNER = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
)

// The fixed key signs everything in these tests: RSA-3072 keygen is slow,
// so the only generated key is NewKey's own test.
var (
	sampleKeyOnce sync.Once
	sampleKey     *rsa.PrivateKey
	sampleKeyErr  error
)

func testKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	sampleKeyOnce.Do(func() { sampleKey, sampleKeyErr = ReadKeyFile(sampleKeyFile) })
	if sampleKeyErr != nil {
		t.Fatalf("ReadKeyFile(%s): %v", sampleKeyFile, sampleKeyErr)
	}
	return sampleKey
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testConfig is testdata/enclave.json.
var testConfig = Config{ProductID: 7, SVN: 3, Debug: false, HeapMB: 128, Threads: 8}
