package attest

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMetricsHistogram: observations land in the first bucket whose bound
// is ≥ the latency (le is inclusive), buckets are cumulative, and +Inf,
// _count and the requests counters agree.
func TestMetricsHistogram(t *testing.T) {
	m := newMetrics()
	var sum float64
	for _, d := range []time.Duration{300 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		m.observe("POST /attest/{type}", 200, d)
		sum += d.Seconds()
	}
	m.observe("POST /attest/{type}", 400, time.Millisecond)
	sum += time.Millisecond.Seconds()
	rec := httptest.NewRecorder()
	m.serve(rec, nil)
	out := rec.Body.String()
	for _, want := range []string{
		`cloister_attest_requests_total{route="POST /attest/{type}",code="200"} 4`,
		`cloister_attest_requests_total{route="POST /attest/{type}",code="400"} 1`,
		`cloister_attest_request_duration_seconds_bucket{route="POST /attest/{type}",le="0.0005"} 1`,
		`cloister_attest_request_duration_seconds_bucket{route="POST /attest/{type}",le="0.001"} 3`,
		`cloister_attest_request_duration_seconds_bucket{route="POST /attest/{type}",le="0.005"} 4`,
		`cloister_attest_request_duration_seconds_bucket{route="POST /attest/{type}",le="10"} 4`,
		`cloister_attest_request_duration_seconds_bucket{route="POST /attest/{type}",le="+Inf"} 5`,
		`cloister_attest_request_duration_seconds_count{route="POST /attest/{type}"} 5`,
		fmt.Sprintf(`cloister_attest_request_duration_seconds_sum{route="POST /attest/{type}"} %g`, sum),
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
}
