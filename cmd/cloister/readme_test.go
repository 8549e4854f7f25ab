package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every 'cloister …' command line in the README's shell blocks names a
// command that exists and only flags that command defines: the README is
// the newcomer's first contact, and a renamed flag there is a broken
// first step. (What the commands then do is checked by hand and by each
// command's own tests.)
func TestREADMECommandsExist(t *testing.T) {
	lines := readmeCommands(t, "../../README.md")
	if len(lines) < 20 {
		t.Fatalf("found only %d cloister command lines in README.md: the extraction is broken", len(lines))
	}
	helps := map[string]string{}
	for _, line := range lines {
		args := strings.Fields(line)[1:]
		if i := slicesIndex(args, "--"); i >= 0 {
			args = args[:i] // the app's own arguments
		}
		cmd, rest, _ := lookup(args)
		if cmd == nil {
			t.Errorf("README: %q: no such command", line)
			continue
		}
		help, ok := helps[cmd.path]
		if !ok {
			r := runCLI(t, append(strings.Fields(cmd.path), "--help")...)
			if r.code != 0 {
				t.Fatalf("cloister %s --help: %v", cmd.path, r)
			}
			help, helps[cmd.path] = r.stdout, r.stdout
		}
		for _, a := range rest {
			if !strings.HasPrefix(a, "-") || a == "-" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(help) {
				t.Errorf("README: %q: cloister %s has no flag --%s", line, cmd.path, name)
			}
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// readmeCommands returns the cloister command lines of the README's sh
// blocks, continuation lines joined, comments cut, and command and process
// substitutions ($(…), <(…)) replaced by a word (their own cloister
// commands are returned too).
func readmeCommands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	subst := regexp.MustCompile(`[<$]\(([^()]*)\)`)
	var out []string
	var in bool
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "```"):
			in = l == "```sh"
			continue
		case !in:
			continue
		}
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		} else if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(strings.TrimSpace(l), `\`) {
			cur += strings.TrimSuffix(strings.TrimSpace(l), `\`) + " "
			continue
		}
		l, cur = cur+l, ""
		for _, m := range subst.FindAllStringSubmatch(l, -1) {
			if inner := strings.TrimSpace(m[1]); strings.HasPrefix(inner, "cloister ") {
				out = append(out, inner)
			}
		}
		l = subst.ReplaceAllString(l, "WORD")
		for _, part := range regexp.MustCompile(`&&|\|\||[|;&]`).Split(l, -1) {
			if p := strings.TrimSpace(part); strings.HasPrefix(p, "cloister ") {
				out = append(out, p)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
