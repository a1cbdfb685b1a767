package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// ipam calls the IPAM plugin the configuration names. Addressing is not
// ours: host-local (or dhcp, static, whereabouts) allocates and releases,
// exactly as under the bridge plugin.
type ipam struct {
	typ   string
	stdin []byte // the configuration the IPAM plugin reads
	path  string // CNI_PATH
	conf  string // cniVersion of the configuration
}

// newIPAM prepares the IPAM call. Without an "ipam" section, the plugin
// uses host-local over the configuration's subnet (and subnet6), with
// host-local's default data directory.
func newIPAM(stdin []byte, c *NetConf, cniPath string) (*ipam, error) {
	ip := &ipam{typ: c.IPAM.Type, stdin: stdin, path: cniPath, conf: c.CNIVersion}
	if ip.typ != "" {
		return ip, nil
	}
	if c.Subnet == "" {
		return nil, invalidConf(`no "ipam" section and no "subnet": give an ipam section (such as {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}) or a subnet to allocate from`)
	}
	ranges := [][]map[string]string{{{"subnet": c.Subnet}}}
	if c.Gateway != "" {
		ranges[0][0]["gateway"] = c.Gateway
	}
	if c.Subnet6 != "" {
		r6 := map[string]string{"subnet": c.Subnet6}
		if c.Gateway6 != "" {
			r6["gateway"] = c.Gateway6
		}
		ranges = append(ranges, []map[string]string{r6})
	}
	var err error
	ip.typ = "host-local"
	ip.stdin, err = setField(stdin, "ipam", map[string]any{"type": ip.typ, "ranges": ranges})
	return ip, err
}

// setField returns the JSON object conf with key set to v.
func setField(conf []byte, key string, v any) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(conf, &m); err != nil {
		return nil, invalidConf("parse network configuration: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m[key] = b
	return json.Marshal(m)
}

// add allocates. The result is converted to the current result version.
func (ip *ipam) add(ctx context.Context) (*types100.Result, error) {
	var res types.Result
	err := ip.call(ctx, func(stdin []byte) error {
		var err error
		res, err = invoke.DelegateAdd(ctx, ip.typ, stdin, nil)
		return err
	})
	if err != nil {
		return nil, prefixErr(err, "ipam "+ip.typ)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("ipam %s: convert result: %w", ip.typ, err)
	}
	return r, nil
}

// del releases; releasing what is not allocated is not an error (IPAM
// plugins' DEL is idempotent too).
func (ip *ipam) del(ctx context.Context) error {
	err := ip.call(ctx, func(stdin []byte) error { return invoke.DelegateDel(ctx, ip.typ, stdin, nil) })
	if err != nil {
		return prefixErr(err, "ipam "+ip.typ+": release")
	}
	return nil
}

func (ip *ipam) check(ctx context.Context) error {
	err := ip.call(ctx, func(stdin []byte) error { return invoke.DelegateCheck(ctx, ip.typ, stdin, nil) })
	if err != nil {
		return prefixErr(err, "ipam "+ip.typ+": check")
	}
	return nil
}

// status and gc exist from spec 1.1.0 on; an IPAM plugin that predates it
// (Debian's host-local 1.1.1 speaks up to 1.0.0) is skipped.
func (ip *ipam) status(ctx context.Context) error {
	if ok, err := ip.speaks(ctx, "1.1.0"); err != nil || !ok {
		return err
	}
	if err := invoke.DelegateStatus(ctx, ip.typ, ip.stdin, nil); err != nil {
		return prefixErr(err, "ipam "+ip.typ+": status")
	}
	return nil
}

func (ip *ipam) gc(ctx context.Context) error {
	if ok, err := ip.speaks(ctx, "1.1.0"); err != nil || !ok {
		return err
	}
	if err := invoke.DelegateGC(ctx, ip.typ, ip.stdin, nil); err != nil {
		return prefixErr(err, "ipam "+ip.typ+": gc")
	}
	return nil
}

// call runs do with the configuration as given and, when the IPAM plugin
// refuses its version, once more with the newest version the plugin speaks
// that is older: a 1.1.0 configuration then works with an IPAM plugin that
// stops at 1.0.0. (The result is converted back by the caller.)
func (ip *ipam) call(ctx context.Context, do func(stdin []byte) error) error {
	err := do(ip.stdin)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrIncompatibleCNIVersion {
		return err
	}
	older, verr := ip.olderVersion(ctx)
	if verr != nil || older == "" {
		return errors.Join(err, verr)
	}
	stdin, serr := setField(ip.stdin, "cniVersion", older)
	if serr != nil {
		return serr
	}
	return do(stdin)
}

// olderVersion returns the newest version below the configuration's that
// the IPAM plugin speaks, or "" when there is none.
func (ip *ipam) olderVersion(ctx context.Context) (string, error) {
	info, err := ip.versions(ctx)
	if err != nil {
		return "", err
	}
	best := ""
	for _, v := range info.SupportedVersions() {
		below, err := version.GreaterThan(ip.conf, v)
		if err != nil || !below {
			continue
		}
		if best == "" {
			best = v
		} else if newer, _ := version.GreaterThan(v, best); newer {
			best = v
		}
	}
	return best, nil
}

func (ip *ipam) speaks(ctx context.Context, v string) (bool, error) {
	info, err := ip.versions(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range info.SupportedVersions() {
		if s == v {
			return true, nil
		}
	}
	return false, nil
}

func (ip *ipam) versions(ctx context.Context) (version.PluginInfo, error) {
	p, err := invoke.FindInPath(ip.typ, filepath.SplitList(ip.path))
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	info, err := invoke.GetVersionInfo(ctx, p, nil)
	if err != nil {
		return nil, fmt.Errorf("ipam %s: version: %w", ip.typ, err)
	}
	return info, nil
}

// prefixErr adds context to err and keeps its CNI error code: skel reports
// the first *types.Error it finds in a chain, which would drop a prefix
// added by wrapping.
func prefixErr(err error, prefix string) error {
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(te.Code, prefix+": "+te.Msg, te.Details)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
