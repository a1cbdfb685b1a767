package nft

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/vishvananda/netns"
)

// routeLocalnet lets the node reach a published port on 127.0.0.1 (B10):
// after output DNAT the packet leaves for a bridge with source 127.0.0.1,
// which the kernel refuses to route unless this is 1 (and the masquerade in
// nat-postrouting then gives it a real source). "all" is ORed with the
// per-interface value, so it also covers bridges created later.
const routeLocalnet = "/proc/sys/net/ipv4/conf/all/route_localnet"

// inNS runs fn on a thread inside ns. The thread is locked and never
// unlocked, so the runtime throws it away afterwards instead of letting
// another goroutine inherit the namespace. /proc/sys/net resolves against
// the opening thread's namespace, which is why sysctls go through here.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (b *Backend) readLocalnet() (uint32, error) {
	var v uint64
	err := inNS(b.ns, func() error {
		raw, err := os.ReadFile(routeLocalnet)
		if err != nil {
			return err
		}
		v, err = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 32)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", routeLocalnet, err)
	}
	return uint32(v), nil
}

func (b *Backend) writeLocalnet(v uint32) error {
	err := inNS(b.ns, func() error {
		return os.WriteFile(routeLocalnet, []byte(strconv.FormatUint(uint64(v), 10)), 0o644)
	})
	if err != nil {
		return fmt.Errorf("write %s=%d: %w", routeLocalnet, v, err)
	}
	return nil
}

// savedLocalnet returns the value to restore on Uninstall: the one we
// remembered, else the one a previous agent stored in our table, else the
// current value (we have not changed it yet).
func (b *Backend) savedLocalnet() (uint32, error) {
	if b.saved != nil {
		return *b.saved, nil
	}
	v, ok := b.readSavedSet()
	if !ok {
		var err error
		if v, err = b.readLocalnet(); err != nil {
			return 0, err
		}
	}
	b.saved = &v
	return v, nil
}

// readSavedSet reads set saved-route_localnet of the backend's mode, else
// of the other mode (an agent that ran with the other backend set the
// sysctl, and the value before it is the one to keep); ok is false when no
// table holds the set (never installed) or it is empty.
func (b *Backend) readSavedSet() (uint32, bool) {
	c, err := b.conn(0)
	if err != nil {
		return 0, false
	}
	for _, m := range append([]Mode{b.mode}, b.mode.others()...) {
		tbl := &nftables.Table{Name: m.table(), Family: famInet}
		s, err := c.GetSetByName(tbl, setSavedLocalnet.name)
		if err != nil {
			continue
		}
		es, err := c.GetSetElements(s)
		if err != nil || len(es) == 0 || len(es[0].Key) != 4 {
			continue
		}
		return binaryutil.NativeEndian.Uint32(es[0].Key), true
	}
	return 0, false
}
