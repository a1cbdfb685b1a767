package nft

import (
	"testing"

	"github.com/portcullis/portcullis/dataplane/model"
)

func boolp(b bool) *bool { return &b }

// smallState is the resolved state the rendering and kernel tests share:
// two networks (one icc=false with IPv6, one with a fixed snat_ip), three
// endpoints, five mappings of every shape, and a link.
func smallState(t *testing.T) *model.Resolved {
	t.Helper()
	r := model.NewResolved()
	ops := []model.Op{
		{Kind: "network", Network: &model.Network{Name: "net0", Bridge: "pc0",
			Subnet: "172.18.0.0/16", Subnet6: "fd00:18::/64", ICC: boolp(false)}},
		{Kind: "network", Network: &model.Network{Name: "net1", Bridge: "pc1",
			Subnet: "172.19.0.0/16", SNATIP: "192.0.2.11"}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "web", Network: "net0", IP: "172.18.0.2",
			IP6: "fd00:18::2", HostIfname: "pcv-web", MAC: "02:42:ac:12:00:02",
			Exposed: []model.PortProto{{Port: 80, Proto: "tcp"}}}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "db", Network: "net0", IP: "172.18.0.3",
			HostIfname: "pcv-db", MAC: "02:42:ac:12:00:03", SNATIP: "192.0.2.10",
			Exposed: []model.PortProto{{Port: 5432, Proto: "tcp"}}}},
		{Kind: "endpoint", Endpoint: &model.Endpoint{ID: "app", Network: "net1", IP: "172.19.0.2",
			HostIfname: "pcv-app", MAC: "02:42:ac:13:00:02"}},
		{Kind: "port", Port: &model.PortMapping{ID: "web-http", Endpoint: "web", Proto: "tcp",
			HostPort: 8080, Port: 80}},
		{Kind: "port", Port: &model.PortMapping{ID: "db-dns", Endpoint: "db", Proto: "udp",
			HostIP: "127.0.0.1", HostPort: 5353, Port: 53}},
		{Kind: "port", Port: &model.PortMapping{ID: "web-range", Endpoint: "web", Proto: "tcp",
			HostPortRange: "8000-8009", PortRange: "8000-8009"}},
		{Kind: "port", Port: &model.PortMapping{ID: "app-sctp", Endpoint: "app", Proto: "sctp",
			HostIP: "192.0.2.1", HostPortRange: "9000-9002", PortRange: "7000-7002"}},
		{Kind: "port", Port: &model.PortMapping{ID: "web-tls6", Endpoint: "web", Proto: "tcp",
			HostIP: "2001:db8::1", HostPort: 443, Port: 443}},
		{Kind: "link", Link: &model.Link{Parent: "web", Alias: "db", Child: "db"}},
	}
	for _, op := range ops {
		if _, err := r.Do(op); err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
	}
	return r
}
