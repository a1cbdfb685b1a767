package model

import (
	"reflect"
	"strings"
	"testing"
)

// A network in use may not change its addressing: the refusal names the
// field that changed, with the old and the new value, and changes nothing.
func TestNetworkInUseNamesTheChange(t *testing.T) {
	cases := []struct {
		name     string
		n        Network
		field    string
		old, new string
	}{
		{"subnet", Network{Name: "default", Bridge: "pc0", Subnet: "172.18.0.0/16", Subnet6: "fd00:17::/64"}, "subnet", "172.17.0.0/16", "172.18.0.0/16"},
		{"bridge", Network{Name: "default", Bridge: "pc9", Subnet: "172.17.0.0/16", Subnet6: "fd00:17::/64"}, "bridge", "pc0", "pc9"},
		{"subnet6", Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16", Subnet6: "fd00:18::/64"}, "subnet6", "fd00:17::/64", "fd00:18::/64"},
		{"subnet6 dropped", Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16"}, "subnet6", "fd00:17::/64", "none"},
		{"gateway", Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16", Subnet6: "fd00:17::/64", Gateway: "172.17.0.254"}, "gateway", "172.17.0.1", "172.17.0.254"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectRefusal(t, base(t), Op{Kind: "network", Network: &c.n}, 409, c.field, "from "+c.old+" to "+c.new)
		})
	}
	// Positive control: policy of a network in use may change.
	r := base(t)
	off := false
	if _, err := r.PutNetwork(Network{Name: "default", Bridge: "pc0", Subnet: "172.17.0.0/16", Subnet6: "fd00:17::/64", ICC: &off, MTU: 1400}); err != nil {
		t.Fatalf("policy change of a network in use: %v", err)
	}
}

// expectRefusal applies op to r and checks that it is refused with status,
// naming field and every one of values in the message, and that the state
// did not change.
func expectRefusal(t *testing.T, r *Resolved, op Op, status int, field string, values ...string) {
	t.Helper()
	before := r.State()
	_, err := r.Change(op)
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("got %v, want a refusal", err)
	}
	if e.Status != status || e.Field != field {
		t.Errorf("got %d %s %q, want %d %s", e.Status, e.Field, e.Msg, status, field)
	}
	for _, v := range values {
		if !strings.Contains(e.Msg, v) {
			t.Errorf("message %q does not name %q", e.Msg, v)
		}
	}
	if !reflect.DeepEqual(r.State(), before) {
		t.Error("refused change altered the state")
	}
}

// withThree is base with a third endpoint, so longer cycles can be made.
func withThree(t *testing.T) *Resolved {
	r := base(t)
	must(t)(r.PutEndpoint(Endpoint{ID: "cache", Network: "default", IP: "172.17.0.7", Netns: "/run/netns/cache"}))
	return r
}

// A link that closes a cycle, of two endpoints or more, is refused with 409
// naming the cycle; links that only meet (a diamond) are not cycles.
func TestLinkCycleRefused(t *testing.T) {
	cases := []struct {
		name     string
		existing []Link
		add      Link
		cycle    string
	}{
		{"two", []Link{{Parent: "web", Alias: "db", Child: "db"}},
			Link{Parent: "db", Alias: "web", Child: "web"}, "db -> web -> db"},
		{"three", []Link{{Parent: "web", Alias: "db", Child: "db"}, {Parent: "db", Alias: "cache", Child: "cache"}},
			Link{Parent: "cache", Alias: "web", Child: "web"}, "cache -> web -> db -> cache"},
		{"second alias", []Link{{Parent: "web", Alias: "db", Child: "db"}, {Parent: "web", Alias: "db2", Child: "db"}},
			Link{Parent: "db", Alias: "web", Child: "web"}, "db -> web -> db"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := withThree(t)
			for _, l := range c.existing {
				must(t)(r.PutLink(l))
			}
			expectRefusal(t, r, Op{Kind: "link", Link: &c.add}, 409, "child", c.add.Key(), c.cycle)
		})
	}
}

func TestLinkWithoutCycleAccepted(t *testing.T) {
	r := withThree(t)
	// A diamond: web reaches cache two ways, and nothing leads back.
	link := func(parent, alias, child string) error {
		_, err := r.Change(Op{Kind: "link", Link: &Link{Parent: parent, Alias: alias, Child: child}})
		return err
	}
	for _, l := range [][3]string{{"web", "db", "db"}, {"db", "cache", "cache"}, {"web", "cache", "cache"}} {
		if err := link(l[0], l[1], l[2]); err != nil {
			t.Fatalf("link %v: %v", l, err)
		}
	}
	// Re-pointing a link is judged without the link it replaces: db/cache
	// pointing at web would close db -> web -> db, so it is refused, and
	// once web/db is gone the same link is accepted.
	if err := link("db", "cache", "web"); StatusOf(err) != 409 {
		t.Errorf("re-pointed link closing a cycle: %v", err)
	}
	must(t)(r.DeleteLink("web", "db"))
	if err := link("db", "cache", "web"); err != nil {
		t.Errorf("re-pointed link without a cycle: %v", err)
	}
}

// A state saved before cycles were refused still loads, from a snapshot
// (Load) or a journal (Do): only new changes are held to the rule.
func TestSavedCycleLoads(t *testing.T) {
	r := base(t)
	must(t)(r.Do(Op{Kind: "link", Link: &Link{Parent: "web", Alias: "db", Child: "db"}}))
	if _, err := r.Do(Op{Kind: "link", Link: &Link{Parent: "db", Alias: "web", Child: "web"}}); err != nil {
		t.Errorf("replay of a journalled link that closes a cycle: %v", err)
	}
	loaded, err := Load(r.State())
	if err != nil {
		t.Fatalf("load a saved cycle: %v", err)
	}
	if len(loaded.Links) != 2 {
		t.Errorf("loaded links %v", loaded.Links)
	}
}
