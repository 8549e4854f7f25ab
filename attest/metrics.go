package attest

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// metrics are Prometheus text-format counters, kept by hand so the service
// needs no metrics dependency.
type metrics struct {
	mu       sync.Mutex
	requests map[string]uint64 // "route|code"
	seconds  map[string]float64
	verdicts map[string]uint64
	rotated  map[string]uint64 // key rotations by result: "ok", "failed"
}

func newMetrics() *metrics {
	return &metrics{requests: map[string]uint64{}, seconds: map[string]float64{}, verdicts: map[string]uint64{},
		rotated: map[string]uint64{}}
}

func (m *metrics) rotation(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.rotated["ok"]++
	} else {
		m.rotated["failed"]++
	}
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[fmt.Sprintf("%s|%d", route, code)]++
	m.seconds[route] += d.Seconds()
}

func (m *metrics) verdict(v string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verdicts[v]++
}

func (m *metrics) serve(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE cloister_attest_requests_total counter")
	for _, k := range sortedKeys(m.requests) {
		var route string
		var code int
		for i := len(k) - 1; i >= 0; i-- {
			if k[i] == '|' {
				route = k[:i]
				_, _ = fmt.Sscan(k[i+1:], &code)
				break
			}
		}
		fmt.Fprintf(w, "cloister_attest_requests_total{route=%q,code=\"%d\"} %d\n", route, code, m.requests[k])
	}
	fmt.Fprintln(w, "# TYPE cloister_attest_request_seconds_total counter")
	for _, k := range sortedKeys(m.seconds) {
		fmt.Fprintf(w, "cloister_attest_request_seconds_total{route=%q} %g\n", k, m.seconds[k])
	}
	fmt.Fprintln(w, "# TYPE cloister_attest_verdicts_total counter")
	for _, k := range sortedKeys(m.verdicts) {
		fmt.Fprintf(w, "cloister_attest_verdicts_total{verdict=%q} %d\n", k, m.verdicts[k])
	}
	fmt.Fprintln(w, "# TYPE cloister_attest_key_rotations_total counter")
	for _, k := range sortedKeys(m.rotated) {
		fmt.Fprintf(w, "cloister_attest_key_rotations_total{result=%q} %d\n", k, m.rotated[k])
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
