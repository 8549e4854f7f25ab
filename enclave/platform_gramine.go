package enclave

import (
	"context"
	"fmt"
	"os"

	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
	"github.com/cloister-dev/cloister/tee/gramine"
)

// launchPlatform opens the platform a launch names, when the enclave
// process opens it itself: tee=sgx opens Gramine's attestation directory.
// The simulator kinds return nil (newEnv asks the host); they are refused
// when this process runs under Gramine, where only the hardware may give
// evidence and keys.
func launchPlatform(l wire.Launch) (tee.Platform, error) {
	return platformAt(l, gramine.DefaultRoot)
}

// platformAt is launchPlatform with Gramine's directory as a parameter,
// for tests.
func platformAt(l wire.Launch, gramineRoot string) (tee.Platform, error) {
	switch tee.Kind(l.TEE) {
	case tee.KindSimSGX, tee.KindSimTDX, tee.KindTDX, tee.KindSNP:
		// The simulator's platform, and a confidential VM's (where
		// `cloister run` is inside the TEE with the app), are served by the
		// host through the rings. Under Gramine the host is outside the
		// enclave, so its evidence and keys must never be taken.
		if underGramine(gramineRoot) {
			return nil, fmt.Errorf("enclave: launched as %s, but %s exists: under Gramine only tee=sgx is accepted (that platform's evidence and keys would come from the host)", l.TEE, gramineRoot)
		}
		return nil, nil
	case tee.KindSGX:
		return openGramine(l.AttestRoot, gramineRoot)
	}
	return nil, fmt.Errorf("enclave: tee %q: want sim-sgx, sim-tdx, sgx, tdx or sev-snp", l.TEE)
}

// openGramine opens tee/gramine at defaultRoot, or at attestRoot (the
// direct-exec test mode), which is refused when defaultRoot exists: inside
// Gramine the real attestation directory is always there, so attest= can
// never point a real enclave at host-made quotes or keys.
func openGramine(attestRoot, defaultRoot string) (tee.Platform, error) {
	root := defaultRoot
	if attestRoot != "" {
		if underGramine(defaultRoot) {
			return nil, fmt.Errorf("enclave: the launch names attest=%s, but %s exists: refused under Gramine", attestRoot, defaultRoot)
		}
		root = attestRoot
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := gramine.Open(ctx, gramine.Config{Root: root})
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	return p, nil
}

// underGramine reports whether Gramine's attestation directory exists at
// root: the sign that this process runs under Gramine.
func underGramine(root string) bool {
	_, err := os.Stat(root)
	return err == nil
}
