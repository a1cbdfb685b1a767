package model

import (
	"strings"
	"testing"
)

// TestOverlapMessage: an overlap names the field, both subnets and the
// network, for IPv4 and IPv6 alike, and nothing unset ("invalid Prefix").
func TestOverlapMessage(t *testing.T) {
	r := NewResolved()
	if _, err := r.PutNetwork(Network{Name: "other", Subnet: "198.51.0.0/16", Subnet6: "fd00:51::/64"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n            Network
		field, parts string
	}{
		{Network{Name: "new", Subnet: "198.51.100.0/24"}, "subnet", `subnet 198.51.100.0/24 overlaps network "other" (subnet 198.51.0.0/16)`},
		{Network{Name: "new", Subnet: "10.9.0.0/24", Subnet6: "fd00:51::/96"}, "subnet6", `subnet6 fd00:51::/96 overlaps network "other" (subnet6 fd00:51::/64)`},
	} {
		_, err := r.PutNetwork(c.n)
		e, ok := err.(*Error)
		if !ok || e.Field != c.field || !strings.Contains(e.Msg, c.parts) || strings.Contains(e.Msg, "invalid") {
			t.Errorf("PUT %+v: %v, want field %s and %q", c.n, err, c.field, c.parts)
		}
	}
}
