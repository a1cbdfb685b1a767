package nft

import (
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

// A routed network (external, no bridge: ptp) stands in the sets through
// its endpoints' host veths: each is an interface into the network (no
// masquerade towards it, hairpin masquerade, inbound filtering) and, with
// icc on only, may reach the network's subnet. No bridge element is made
// for it, not even an empty name.
func TestRoutedNetworkElems(t *testing.T) {
	for _, icc := range []bool{true, false} {
		r := model.NewResolved()
		if _, err := r.PutNetwork(model.Network{Name: "ptp", Subnet: "10.61.0.0/24", External: true, ICC: &icc}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.PutEndpoint(model.Endpoint{ID: "a", Network: "ptp", IP: "10.61.0.5", HostIfname: "veth0a", MAC: "02:00:00:00:00:05"}); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for id := range wantElems(ModeFull, r) {
			ids = append(ids, id)
		}
		want := []string{
			`inet bridges "veth0a"`, `inet bridge-subnets4 "veth0a" . 10.61.0.0/24`, "inet masq4 10.61.0.0/24",
		}
		for _, w := range want {
			if !slices.Contains(ids, w) {
				t.Errorf("icc %v: element %q missing; have %v", icc, w, ids)
			}
		}
		hasICC := slices.Contains(ids, `inet routed-icc4 "veth0a" . 10.61.0.0/24`)
		if hasICC != icc {
			t.Errorf("icc %v: routed-icc4 element present %v; elements %v", icc, hasICC, ids)
		}
		for _, id := range ids {
			if strings.Contains(id, `""`) {
				t.Errorf("element for an empty bridge name: %q", id)
			}
		}
	}
}
