package ebpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// skbChecksum is where the running kernel keeps skb->ip_summed, for the
// programs' own checksum updates (PC_CFG_CSUM_DIRECT in bpf/lib/common.h):
// they read it through bpf_cast_to_kern_ctx, at a byte offset and shift
// found in the kernel's BTF. err says why they cannot, and the checksum
// helpers then do the work.
type skbChecksum struct {
	off, shift uint32
	err        error
}

// mode is what /v1/status shows.
func (c skbChecksum) mode() string {
	if c.err != nil {
		return "helpers: " + c.err.Error()
	}
	return "direct"
}

var kernelChecksum = sync.OnceValue(func() skbChecksum {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return skbChecksum{err: fmt.Errorf("no kernel BTF: %w", err)}
	}
	return findSkbChecksum(spec)
})

// findSkbChecksum looks for the kfunc and the bitfield in spec.
func findSkbChecksum(spec *btf.Spec) skbChecksum {
	var fn *btf.Func
	if err := spec.TypeByName("bpf_cast_to_kern_ctx", &fn); err != nil {
		return skbChecksum{err: fmt.Errorf("kernel lacks bpf_cast_to_kern_ctx (Linux 6.2): %w", err)}
	}
	var skb *btf.Struct
	if err := spec.TypeByName("sk_buff", &skb); err != nil {
		return skbChecksum{err: fmt.Errorf("struct sk_buff not in the kernel's BTF: %w", err)}
	}
	bit, size, ok := findMember(skb.Members, "ip_summed", 0)
	switch {
	case !ok:
		return skbChecksum{err: errors.New("struct sk_buff has no ip_summed")}
	case size != 2 || bit%8+2 > 8:
		return skbChecksum{err: fmt.Errorf("skb->ip_summed is %d bits at bit %d, not a 2-bit field within a byte", size, bit)}
	}
	return skbChecksum{off: uint32(bit / 8), shift: uint32(bit % 8)}
}

// findMember returns the bit offset and bitfield size of the member name,
// looking into anonymous structs and unions (struct_group).
func findMember(ms []btf.Member, name string, base btf.Bits) (btf.Bits, btf.Bits, bool) {
	for _, m := range ms {
		if m.Name == name {
			return base + m.Offset, m.BitfieldSize, true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if bit, size, ok := findMember(t.Members, name, base+m.Offset); ok {
				return bit, size, true
			}
		case *btf.Union:
			if bit, size, ok := findMember(t.Members, name, base+m.Offset); ok {
				return bit, size, true
			}
		}
	}
	return 0, 0, false
}
