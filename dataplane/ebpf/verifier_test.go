package ebpf

import (
	"regexp"
	"sort"
	"testing"

	"github.com/cilium/ebpf"
)

var (
	processedRE = regexp.MustCompile(`processed (\d+) insns`)
	stackRE     = regexp.MustCompile(`stack depth ([0-9+]+)`)
)

// TestVerifier loads every program with every option set and logs how many
// instructions the verifier processed, so growth shows up in test output.
func TestVerifier(t *testing.T) {
	requireBPF(t)
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"default", func(*Config) {}},
		{"no-fib", func(c *Config) { c.NoFIBLocal = true }},
		{"fast-path", func(c *Config) { c.FastPath = true }},
		{"max-retries", func(c *Config) { c.NATRetries = 32 }},
		{"helper-checksums", func(c *Config) { c.HelperChecksums = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.cfg(&cfg)
			d, err := loadDatapath(cfg, loadOptions{logLevel: ebpf.LogLevelStats})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer d.Close()
			names := make([]string, 0, len(d.progs))
			for n := range d.progs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				info, err := d.progs[n].Info()
				if err != nil {
					t.Fatalf("%s: info: %v", n, err)
				}
				insns, _ := info.Instructions()
				m := processedRE.FindStringSubmatch(d.progs[n].VerifierLog)
				if m == nil {
					t.Errorf("%s: no instruction count in the verifier log:\n%s", n, d.progs[n].VerifierLog)
					continue
				}
				// Stack depth per frame (subprograms after a +): the
				// frames of a call chain share 512 bytes.
				st := stackRE.FindStringSubmatch(d.progs[n].VerifierLog)
				if st == nil {
					st = []string{"", "?"}
				}
				t.Logf("%-22s processed %7s insns, %5d instructions, stack %s", n, m[1], len(insns), st[1])
			}
		})
	}
}
