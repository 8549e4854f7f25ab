package sim

import (
	"fmt"

	"github.com/cloister-dev/cloister/tee/appsign"
)

// AppFromFiles measures the app binary at appPath as the simulator runs it.
// With a signature (sigPath non-empty) the signature must verify and match
// the binary, and the identity comes from it: MRENCLAVE, MRSIGNER, product,
// SVN and debug from the signed configuration. Without one, the app is
// measured with appsign.DefaultConfig (a debug enclave) and its MRSIGNER is
// all zeros: nobody vouches for it. `cloister measure` prints the same
// values for the same files.
func AppFromFiles(appPath, sigPath string) (App, error) {
	if sigPath == "" {
		cfg := appsign.DefaultConfig()
		m, err := appsign.MeasureFile(appPath, cfg)
		if err != nil {
			return App{}, err
		}
		return App{MRENCLAVE: m, ProductID: cfg.ProductID, SVN: cfg.SVN, Debug: cfg.Debug}, nil
	}
	sig, err := appsign.ReadSignatureFile(sigPath)
	if err != nil {
		return App{}, err
	}
	if err := sig.Verify(); err != nil {
		return App{}, err
	}
	f, err := appsign.OpenBinary(appPath)
	if err != nil {
		return App{}, err
	}
	defer f.Close()
	if err := sig.Check(f); err != nil {
		return App{}, fmt.Errorf("sim: %s does not match its signature %s: %w", appPath, sigPath, err)
	}
	return App{MRENCLAVE: sig.MRENCLAVE, MRSIGNER: sig.MRSIGNER(), ProductID: sig.Config.ProductID, SVN: sig.Config.SVN, Debug: sig.Config.Debug}, nil
}
