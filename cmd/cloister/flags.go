package main

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// hexList is a repeatable flag of hex values; a comma-separated list in one
// flag is accepted too, so "--mrenclave A,B" and "--mrenclave A --mrenclave B"
// mean the same any-of list.
type hexList [][]byte

func (h *hexList) String() string {
	if h == nil {
		return ""
	}
	s := make([]string, len(*h))
	for i, b := range *h {
		s[i] = hex.EncodeToString(b)
	}
	return strings.Join(s, ",")
}

func (h *hexList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		part = strings.TrimPrefix(strings.TrimPrefix(part, "0x"), "0X")
		if part == "" {
			return fmt.Errorf("empty hex value")
		}
		b, err := hex.DecodeString(part)
		if err != nil {
			return fmt.Errorf("not hex: %w", err)
		}
		*h = append(*h, b)
	}
	return nil
}

// stringList is a repeatable flag that also splits comma lists.
type stringList []string

func (s *stringList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

func (s *stringList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return fmt.Errorf("empty value")
		}
		*s = append(*s, part)
	}
	return nil
}

// uint16Flag is an optional uint16: set records whether the flag was given,
// because 0 is a meaningful minimum and must not read as "absent".
type uint16Flag struct {
	v   uint16
	set bool
}

func (u *uint16Flag) String() string {
	if u == nil || !u.set {
		return ""
	}
	return strconv.FormatUint(uint64(u.v), 10)
}

func (u *uint16Flag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return fmt.Errorf("want an integer 0..65535: %w", err)
	}
	u.v, u.set = uint16(n), true
	return nil
}

// parseTime reads --at: RFC 3339 (e.g. 2025-07-01T00:00:00Z) or Unix
// seconds (e.g. 1751328000). Both are accepted because scripts tend to have
// one or the other, and DESIGN.md promises both.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("empty time")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return time.Time{}, fmt.Errorf("time %q: Unix seconds must be positive", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2025-07-01T00:00:00Z) or Unix seconds (1751328000)", s)
	}
	return t, nil
}

// teeKinds are the --tee values of the commands that open a platform
// (quote, attest serve); run takes only the simulator's two.
var (
	teeKinds    = []string{"auto", "sim-sgx", "sim-tdx", "tdx", "sev-snp", "sgx"}
	simTEEKinds = []string{"sim-sgx", "sim-tdx"}
)

// checkChoice returns a usage error unless value is one of choices: a bad
// flag value is a usage mistake (exit 2), found before any work is done.
func checkChoice(flagName, value string, choices []string) error {
	for _, c := range choices {
		if value == c {
			return nil
		}
	}
	return usagef("--%s %q: want one of %s", flagName, value, strings.Join(choices, ", "))
}

// checkHostPort returns a usage error unless value is HOST:PORT with a
// numeric port in 0..65535 (1..65535 unless zeroOK), or, with wildcardOK,
// the port "*" (any port of that host).
func checkHostPort(flagName, value string, zeroOK, wildcardOK bool) error {
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		return usagef("--%s %q: want HOST:PORT: %v", flagName, value, err)
	}
	if wildcardOK && port == "*" {
		return nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (n == 0 && !zeroOK) {
		lo := 1
		if zeroOK {
			lo = 0
		}
		return usagef("--%s %q: port %q: want a number in %d..65535", flagName, value, port, lo)
	}
	return nil
}
