package dataplane

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

func TestCheckOwner(t *testing.T) {
	r := model.NewResolved()
	icc, masq := true, true
	dockerNet := model.Network{Name: "bridge", Bridge: "docker0", Subnet: "172.17.0.0/16", ICC: &icc, Masquerade: &masq, Source: model.SourceDocker}
	for _, op := range []model.Op{
		{Kind: "network", Network: &dockerNet},
		{Kind: "network", Network: &model.Network{Name: "mine", Bridge: "pc0", Subnet: "10.1.0.0/24"}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "web", Network: "bridge", IP: "172.17.0.2", MAC: "02:42:ac:11:00:02", HostIfname: "veth1", Source: model.SourceDocker}},
	} {
		if _, err := r.Do(op); err != nil {
			t.Fatal(err)
		}
	}
	status := func(err error) int {
		if me, ok := err.(*model.Error); ok {
			return me.Status
		}
		return 0
	}
	cases := []struct {
		name   string
		source string
		op     model.Op
		want   int
		msg    string
	}{
		{"api deletes a docker endpoint", "", model.Op{Kind: "endpoint", Delete: true, Key: "web"}, http.StatusConflict, "managed by docker"},
		{"api replaces a docker network's subnet", "", model.Op{Kind: "network", Network: &model.Network{Name: "bridge", Subnet: "10.9.0.0/16"}}, http.StatusConflict, "not subnet"},
		{"api claims source docker", "", model.Op{Kind: "network", Network: &model.Network{Name: "x", Subnet: "10.2.0.0/24", Source: "docker"}}, http.StatusBadRequest, "leave it empty"},
		{"docker takes the api's network", model.SourceDocker, model.Op{Kind: "network", Network: &model.Network{Name: "mine", Subnet: "10.1.0.0/24", Source: "docker"}}, http.StatusConflict, "made through the API"},
		{"docker deletes the api's network", model.SourceDocker, model.Op{Kind: "network", Delete: true, Key: "mine"}, http.StatusConflict, "made through the API"},
		{"docker changes its own", model.SourceDocker, model.Op{Kind: "endpoint", Delete: true, Key: "web"}, 0, ""},
		{"api changes its own", "", model.Op{Kind: "network", Delete: true, Key: "mine"}, 0, ""},
	}
	for _, c := range cases {
		_, err := checkOwner(r, c.source, c.op)
		if status(err) != c.want || (err != nil && !strings.Contains(err.Error(), c.msg)) {
			t.Errorf("%s: got %v (status %d), want status %d with %q", c.name, err, status(err), c.want, c.msg)
		}
	}
	// icc alone may be overridden, from a bare body or a GET sent back.
	off := false
	for _, in := range []model.Network{{Name: "bridge", ICC: &off}, func() model.Network { n := dockerNet; n.ICC = &off; return n }()} {
		op, err := checkOwner(r, "", model.Op{Kind: "network", Network: &in})
		if err != nil {
			t.Fatalf("icc override %+v: %v", in, err)
		}
		n := op.Network
		if *n.ICC || !n.ICCOverride || n.Source != model.SourceDocker || n.Subnet != dockerNet.Subnet || n.Bridge != "docker0" {
			t.Errorf("icc override became %+v", n)
		}
	}
	op, err := checkOwner(r, "", model.Op{Kind: "network", Network: &model.Network{Name: "bridge"}})
	if err != nil || op.Network.ICCOverride {
		t.Errorf("icc left out must clear the override: %+v, %v", op.Network, err)
	}
}
