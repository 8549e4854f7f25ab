package host

import (
	"context"
	"strings"
	"testing"

	"github.com/cloister-dev/cloister/tee"
)

// TestRunCVMNeedsItsPlatform: a confidential-VM kind is launched only with
// a platform of that kind (opened by the caller); never on the simulator.
func TestRunCVMNeedsItsPlatform(t *testing.T) {
	for _, kind := range []tee.Kind{tee.KindTDX, tee.KindSNP} {
		_, err := Run(context.Background(), Config{App: "/bin/true", TEE: kind, StorePath: t.TempDir() + "/db"})
		if err == nil || !strings.Contains(err.Error(), "with the platform opened for it") {
			t.Errorf("%s without a platform: %v", kind, err)
		}
	}
}
