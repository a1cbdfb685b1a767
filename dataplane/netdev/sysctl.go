package netdev

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/dataplane/store"
)

// SysctlFileName is where, in the agent's state directory, the values the
// forwarding sysctls had before the agent first changed them are kept.
const SysctlFileName = "sysctl-saved.json"

// savedSysctls are sysctl values by /proc/sys path, in the order they are
// to be restored: each group's switch first (it resets the rest of its
// group), then the values it reset.
type savedSysctls struct {
	Order  []string          `json:"order"`
	Values map[string]string `json:"values"`
}

// forwardingGroup is what one forwarding switch changes besides itself:
// net.ipv4.ip_forward sets conf/*/forwarding (all, default, every
// interface) and turns conf/all/accept_redirects off; IPv6's
// conf/all/forwarding sets default's and every interface's.
func forwardingGroup(ipv6 bool, ifnames []string) []string {
	sw, fam, rest := "net/ipv4/ip_forward", "net/ipv4/conf/", []string{"all/forwarding", "default/forwarding", "all/accept_redirects"}
	if ipv6 {
		sw, fam, rest = "net/ipv6/conf/all/forwarding", "net/ipv6/conf/", []string{"default/forwarding"}
	}
	keys := []string{sw}
	for _, r := range rest {
		keys = append(keys, fam+r)
	}
	for _, n := range ifnames {
		keys = append(keys, fam+n+"/forwarding")
	}
	return keys
}

// saveForwarding records, in m.SysctlFile, the values of the forwarding
// group of each family in fams before the agent changes them: once per
// family, so a restarted agent, which finds them changed, does not take
// its own values for the node's. Interfaces the agent made are left out:
// uninstall deletes them.
func (m *Manager) saveForwarding(ipv6 bool) error {
	if m.SysctlFile == "" {
		return nil
	}
	saved, err := readSaved(m.SysctlFile)
	if err != nil {
		return err
	}
	ifnames, err := m.foreignIfnames()
	if err != nil {
		return err
	}
	changed := false
	for _, v6 := range []bool{false, true} {
		keys := forwardingGroup(v6, ifnames)
		if (v6 && !ipv6) || saved.Values[keys[0]] != "" {
			continue
		}
		for _, k := range keys {
			b, err := os.ReadFile("/proc/sys/" + k)
			if errors.Is(err, fs.ErrNotExist) {
				continue // IPv6 off on an interface, or the interface went
			}
			if err != nil {
				return fmt.Errorf("read %s before changing it: %w", k, err)
			}
			saved.Order = append(saved.Order, k)
			saved.Values[k] = strings.TrimSpace(string(b))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	b, err := json.MarshalIndent(saved, "", "\t")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(m.SysctlFile, b)
}

// foreignIfnames lists the interfaces of the namespace the agent did not
// create.
func (m *Manager) foreignIfnames() ([]string, error) {
	links, err := m.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []string
	for _, l := range links {
		if !Owned(l) {
			out = append(out, l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func readSaved(path string) (*savedSysctls, error) {
	s := &savedSysctls{Values: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err == nil {
		err = json.Unmarshal(b, s)
	}
	if err != nil {
		return nil, fmt.Errorf("read saved sysctls %s: %w (remove it to keep the current values at uninstall)", path, err)
	}
	if s.Values == nil {
		s.Values = map[string]string{}
	}
	return s, nil
}

// RestoreForwarding puts back the sysctl values saved in m.SysctlFile, in
// the order they were saved, and removes the file. An interface that is
// gone meanwhile is skipped. Nothing saved means nothing to restore.
func (m *Manager) RestoreForwarding() error {
	if m.SysctlFile == "" {
		return nil
	}
	saved, err := readSaved(m.SysctlFile)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range saved.Order {
		if _, err := Sysctl(k, saved.Values[k]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore sysctls saved in %s: %w", m.SysctlFile, err)
	}
	if err := os.Remove(m.SysctlFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
