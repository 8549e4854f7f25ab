package attest

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// metrics are Prometheus text-format counters and a latency histogram, kept
// by hand so the service needs no metrics dependency.
type metrics struct {
	mu       sync.Mutex
	requests map[routeCode]uint64
	latency  map[string]*histogram // by route
	verdicts map[string]uint64
	rotated  map[string]uint64 // key rotations by result: "ok", "failed"
}

type routeCode struct {
	route string
	code  int
}

// latencyBuckets are the histogram's upper bounds in seconds: a warm quote
// verification is ~0.1 ms of CPU, an RSA signature ~1.5 ms, a cold
// collateral fetch can take seconds.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[routeCode]uint64{}, latency: map[string]*histogram{}, verdicts: map[string]uint64{},
		rotated: map[string]uint64{}}
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	sec := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, sec) // first bound ≥ sec, or len: +Inf
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[routeCode{route, code}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		m.latency[route] = h
	}
	h.counts[i]++
	h.sum += sec
	h.count++
}

func (m *metrics) verdict(v string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verdicts[v]++
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

func (m *metrics) serve(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE cloister_attest_requests_total counter")
	keys := make([]routeCode, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b routeCode) int { return cmp.Or(cmp.Compare(a.route, b.route), cmp.Compare(a.code, b.code)) })
	for _, k := range keys {
		fmt.Fprintf(w, "cloister_attest_requests_total{route=%q,code=\"%d\"} %d\n", k.route, k.code, m.requests[k])
	}
	fmt.Fprintln(w, "# TYPE cloister_attest_request_duration_seconds histogram")
	for _, route := range sortedKeys(m.latency) {
		h := m.latency[route]
		var cum uint64
		for i, n := range h.counts {
			cum += n
			le := "+Inf"
			if i < len(latencyBuckets) {
				le = strconv.FormatFloat(latencyBuckets[i], 'g', -1, 64)
			}
			fmt.Fprintf(w, "cloister_attest_request_duration_seconds_bucket{route=%q,le=%q} %d\n", route, le, cum)
		}
		fmt.Fprintf(w, "cloister_attest_request_duration_seconds_sum{route=%q} %g\n", route, h.sum)
		fmt.Fprintf(w, "cloister_attest_request_duration_seconds_count{route=%q} %d\n", route, h.count)
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
	slices.Sort(out)
	return out
}
