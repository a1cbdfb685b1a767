package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachMode says how programs are attached to interfaces.
type AttachMode string

const (
	// AttachAuto uses tcx where the kernel has it (6.6+), else clsact.
	AttachAuto AttachMode = "auto"
	// AttachTCX uses tcx bpf_links: pinned, swapped atomically on upgrade.
	AttachTCX AttachMode = "tcx"
	// AttachTC uses a clsact qdisc and a direct-action bpf filter.
	AttachTC AttachMode = "tc"
)

const (
	dirIngress = "ingress"
	dirEgress  = "egress"
)

// Our clsact filters are known by this priority and handle, so that a
// restarted agent replaces them in place and Uninstall finds them.
const (
	tcPriority = 0xc0de >> 4
	tcHandle   = 0x1
)

// attachKey names one hook: an interface and a direction.
type attachKey struct {
	ifname string
	dir    string
}

func (k attachKey) String() string { return k.ifname + "/" + k.dir }

// hook is a wanted attachment.
type hook struct {
	ifname  string
	ifindex int
	dir     string
	prog    string
}

func (h hook) key() attachKey { return attachKey{h.ifname, h.dir} }

// attachment is a program attached to a hook.
type attachment struct {
	hook
	mode AttachMode
	lnk  link.Link // tcx only
}

func (a *attachment) String() string {
	return fmt.Sprintf("%s/%s %s (%s)", a.ifname, a.dir, a.prog, a.mode)
}

func tcxAttachType(dir string) ebpf.AttachType {
	if dir == dirEgress {
		return ebpf.AttachTCXEgress
	}
	return ebpf.AttachTCXIngress
}

func tcxPinName(ifindex int, dir string) string { return fmt.Sprintf("tcx-%d-%s", ifindex, dir) }

// attachTCX attaches prog, or swaps it into the link a previous agent
// pinned for this hook (link.Update is atomic: no packet sees no program).
func attachTCX(h hook, prog *ebpf.Program, linkDir string) (link.Link, error) {
	pin := ""
	if linkDir != "" {
		pin = filepath.Join(linkDir, tcxPinName(h.ifindex, h.dir))
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			if err := l.Update(prog); err == nil {
				return l, nil
			}
			// The device this link was on is gone (ENOLINK) and its
			// ifindex was reused: start over.
			l.Unpin()
			l.Close()
		}
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: h.ifindex, Program: prog, Attach: tcxAttachType(h.dir)})
	if err != nil {
		return nil, fmt.Errorf("attach tcx %s %s: %w", h.dir, h.ifname, err)
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			l.Close()
			return nil, fmt.Errorf("pin tcx link of %s %s: %w", h.ifname, h.dir, err)
		}
	}
	return l, nil
}

func tcParent(dir string) uint32 {
	if dir == dirEgress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

func tcFilter(ifindex int, dir string) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    tcParent(dir),
			Handle:    tcHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  tcPriority,
		},
		DirectAction: true,
	}
}

// attachTC adds a clsact qdisc if there is none and puts our filter in
// place; FilterReplace makes a restart swap the program in one step.
func attachTC(h hook, prog *ebpf.Program) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: h.ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc to %s: %w", h.ifname, err)
	}
	f := tcFilter(h.ifindex, h.dir)
	f.Fd = prog.FD()
	f.Name = h.prog
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("attach tc %s filter to %s: %w", h.dir, h.ifname, err)
	}
	return nil
}

// detachTC removes our filter, and the clsact qdisc when nothing else uses it.
func detachTC(ifindex int, dir string) error {
	err := netlink.FilterDel(tcFilter(ifindex, dir))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	removeEmptyClsact(ifindex)
	return nil
}

func removeEmptyClsact(ifindex int) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return
	}
	for _, dir := range []string{dirIngress, dirEgress} {
		fs, err := retryDump(func() ([]netlink.Filter, error) { return netlink.FilterList(l, tcParent(dir)) })
		if err != nil || len(fs) > 0 {
			return
		}
	}
	netlink.QdiscDel(&netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	})
}

// ourTCFilters lists, on every interface, the hooks that carry one of our
// filters (found by priority, handle and program name).
func ourTCFilters() ([]hook, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []hook
	for _, l := range links {
		for _, dir := range []string{dirIngress, dirEgress} {
			fs, err := retryDump(func() ([]netlink.Filter, error) { return netlink.FilterList(l, tcParent(dir)) })
			if err != nil {
				continue // no clsact here
			}
			for _, f := range fs {
				bf, ok := f.(*netlink.BpfFilter)
				if ok && bf.Priority == tcPriority && bf.Handle == tcHandle && strings.HasPrefix(bf.Name, "pc_") {
					out = append(out, hook{ifname: l.Attrs().Name, ifindex: l.Attrs().Index, dir: dir, prog: bf.Name})
				}
			}
		}
	}
	return out, nil
}

// attach puts program prog on hook h in the given mode.
func (b *Backend) attach(h hook, mode AttachMode) (*attachment, error) {
	prog, ok := b.dp.progs[h.prog]
	if !ok {
		return nil, fmt.Errorf("no program %s", h.prog)
	}
	a := &attachment{hook: h, mode: mode}
	switch mode {
	case AttachTCX:
		l, err := attachTCX(h, prog, b.linkDir())
		if err != nil {
			return nil, err
		}
		a.lnk = l
	case AttachTC:
		if err := attachTC(h, prog); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("attach mode %q: want tcx or tc", mode)
	}
	return a, nil
}

// detach removes the attachment; an interface that is already gone is not
// an error.
func (a *attachment) detach() error {
	switch a.mode {
	case AttachTCX:
		if a.lnk == nil {
			return nil
		}
		if err := a.lnk.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("unpin tcx link of %s: %w", a.key(), err)
		}
		// Closing the last reference (the pin is gone) detaches the program.
		err := a.lnk.Close()
		a.lnk = nil
		return err
	case AttachTC:
		if err := detachTC(a.ifindex, a.dir); err != nil {
			return fmt.Errorf("detach tc filter from %s: %w", a.key(), err)
		}
	}
	return nil
}

// probeTCX tells whether the kernel has tcx: attaching to an ifindex that
// cannot exist fails with ENODEV where tcx is known, and otherwise with
// ErrNotSupported (the trick cilium/ebpf's own feature test uses).
func probeTCX(prog *ebpf.Program) error {
	l, err := link.AttachTCX(link.TCXOptions{Interface: int(^uint32(0) >> 1), Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		l.Close()
		return nil
	}
	if errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}
