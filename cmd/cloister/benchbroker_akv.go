package main

import "time"

// The AKV extension's release measurement joins `cloister bench broker`'s run,
// so its figures sit beside the KBS ones measured on the same machine state.
func init() {
	brokerBenchExtras = append(brokerBenchExtras, func(b *brokerBench, r *benchBrokerResult) error {
		// A release costs roughly ten resource requests (an RS256 signature
		// and a token verification), so a tenth of the requests keeps the
		// run's length balanced.
		n := b.requests / 10
		if n < 1 {
			n = 1
		}
		a, err := benchAKVRelease(b.ctx, time.Now, n)
		if err != nil {
			return err
		}
		r.AKVReleasePerS, r.AKVReleaseP50ms, r.AKVReleaseP99ms = a.PerS, a.P50MS, a.P99MS
		return nil
	})
}
