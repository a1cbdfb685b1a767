package nft

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/dataplane/model"
)

// listTables returns `nft list table` of the tables of mode m in namespace ns.
func listTables(t *testing.T, ns string, m Mode) string {
	t.Helper()
	var out string
	for _, tb := range tables(m) {
		out += inNSExec(t, ns, "nft", "list", "table", famName(tb.fam), tb.name)
	}
	return out
}

var elementsRE = regexp.MustCompile(`(?s)elements = \{(.*?)\}`)

// normalize makes two listings comparable: nft wraps element lists as it
// likes and orders hash set elements its own way, so each list is split,
// trimmed and sorted; blank lines and indentation go.
func normalize(s string) []string {
	s = elementsRE.ReplaceAllStringFunc(s, func(m string) string {
		inner := elementsRE.FindStringSubmatch(m)[1]
		var parts []string
		for _, p := range strings.Split(inner, ",") {
			parts = append(parts, strings.Join(strings.Fields(p), " "))
		}
		slices.Sort(parts)
		return "elements = { " + strings.Join(parts, ", ") + " }"
	})
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// sameRuleset fails the test if the kernel's listing of the full mode's
// tables differs from want.
func sameRuleset(t *testing.T, ns string, want string) {
	t.Helper()
	sameRulesetOf(t, ns, ModeFull, want)
}

// sameRulesetOf fails the test if the kernel's listing of the tables of
// mode m differs from want.
func sameRulesetOf(t *testing.T, ns string, m Mode, want string) {
	t.Helper()
	got, exp := normalize(listTables(t, ns, m)), normalize(want)
	if slices.Equal(got, exp) {
		return
	}
	for i := 0; i < max(len(got), len(exp)); i++ {
		g, e := at(got, i), at(exp, i)
		if g != e {
			t.Fatalf("kernel ruleset differs from the rendering at line %d:\n kernel: %s\n render: %s\n\nkernel:\n%s",
				i+1, g, e, strings.Join(got, "\n"))
		}
	}
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<end>"
}

func readSysctl(t *testing.T, ns string, key string) string {
	t.Helper()
	args := []string{"sysctl", "-n", key}
	if ns != "" {
		return strings.TrimSpace(inNSExec(t, ns, args...))
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestKernelMatchesRender proves that the expressions sent over netlink are
// the rules the text says: nft decodes them back into the same text.
func TestKernelMatchesRender(t *testing.T) {
	needRoot(t)
	rootLocalnet := readSysctl(t, "", "net.ipv4.conf.all.route_localnet")
	ns, h := newNS(t, "render")
	b := newBackend(t, h)
	want := smallState(t)
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	sameRuleset(t, ns, Render(want, 0))
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "1" {
		t.Errorf("route_localnet in the namespace = %s, want 1", v)
	}
	if v := readSysctl(t, "", "net.ipv4.conf.all.route_localnet"); v != rootLocalnet {
		t.Fatalf("route_localnet changed in the ROOT namespace: %s -> %s", rootLocalnet, v)
	}

	// A second full sync of the same state is a no-op for the listing.
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	sameRuleset(t, ns, Render(want, 0))

	uninstallLeavesNothing(t, b, ns)
}

// TestPublishedMarkOption: another mark bit is programmed wherever the
// default would be; a mask of several bits, or none, is refused.
func TestPublishedMarkOption(t *testing.T) {
	for _, bad := range []uint32{0x3, 0xff000000} {
		if _, err := New(Options{NetNS: -1, PublishedMark: bad}); err == nil {
			t.Errorf("New accepted published mark %#x", bad)
		}
	}
	needRoot(t)
	ns, h := newNS(t, "mark")
	b, err := New(Options{NetNS: h, PublishedMark: 0x80})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Uninstall(t.Context()); _ = b.Close() })
	if err := b.Apply(t.Context(), smallState(t), nil, true); err != nil {
		t.Fatal(err)
	}
	want := renderWith(ModeFull, smallState(t), 0, 0x80)
	if !strings.Contains(want, "meta mark & 0x00000080 == 0x00000080 accept") {
		t.Fatalf("rendering does not use the mark:\n%s", want)
	}
	sameRuleset(t, ns, want)
}

// TestUninstallRestoresAfterRestart: a new backend (agent restarted) finds
// the saved sysctl value in the table and restores that, not its own view.
func TestUninstallRestoresAfterRestart(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "restart")
	first := newBackend(t, h)
	if err := first.Apply(t.Context(), smallState(t), nil, true); err != nil {
		t.Fatal(err)
	}
	second := newBackend(t, h)
	if err := second.Apply(t.Context(), smallState(t), nil, true); err != nil {
		t.Fatal(err)
	}
	sameRuleset(t, ns, Render(smallState(t), 0))
	if err := second.Uninstall(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "0" {
		t.Errorf("route_localnet after restart and Uninstall = %s, want 0", v)
	}
}

// monitor records the ruleset events of namespace ns until stop is called.
func monitor(t *testing.T, ns string) (stop func() []string) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "monitor")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "monitor", "ruleset")
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Subscribed once it reports a table of its own made after it started
	// (a fixed sleep was not enough on a loaded machine); that table's
	// lines are left out of what it saw.
	const probe = "pct-monitor-probe"
	mark := func(name string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			exec.Command("ip", "netns", "exec", ns, "nft", "add table inet "+name+"; delete table inet "+name).Run()
			if raw, _ := os.ReadFile(out.Name()); strings.Contains(string(raw), name) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("nft monitor did not report within 10 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	mark(probe)
	return func() []string {
		// Events come in order: once a later probe is seen, so is
		// everything before it.
		mark(probe + "-end")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		raw, _ := os.ReadFile(out.Name())
		var events []string
		for _, l := range strings.Split(string(raw), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !strings.Contains(l, probe) {
				events = append(events, l)
			}
		}
		return events
	}
}

// TestIncrementalTouchesOnlyItsElements: adding and deleting one mapping
// sends exactly its element, seen by `nft monitor`, and the ruleset stays
// equal to the rendering of the whole state.
func TestIncrementalTouchesOnlyItsElements(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "delta")
	b := newBackend(t, h)
	want := smallState(t)
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op     model.Op
		events []string
	}{
		{model.Op{Kind: "port", Port: &model.PortMapping{ID: "app-http", Endpoint: "app",
			Proto: "tcp", HostPort: 9090, Port: 80}},
			[]string{"add element inet portcullis dnat4-any { tcp . 9090 : 172.19.0.2 . 80 }",
				"add element inet portcullis dnat4-targets { tcp . 9090 . 172.19.0.2 . 80 }"}},
		{model.Op{Kind: "port", Delete: true, Key: "app-http"},
			[]string{"delete element inet portcullis dnat4-any { tcp . 9090 : 172.19.0.2 . 80 }",
				"delete element inet portcullis dnat4-targets { tcp . 9090 . 172.19.0.2 . 80 }"}},
	}
	for _, s := range steps {
		d, err := want.Do(s.op)
		if err != nil {
			t.Fatal(err)
		}
		stop := monitor(t, ns)
		if err := b.Apply(t.Context(), want, d, false); err != nil {
			t.Fatal(err)
		}
		if events := stop(); !slices.Equal(events, s.events) {
			t.Errorf("events for %s %v:\n got %q\nwant %q", s.op.Kind, s.op.Key, events, s.events)
		}
		sameRuleset(t, ns, Render(want, 0))
	}
	if st := b.Status(); st["incremental_syncs"] != uint64(2) || st["last_sync_mode"] != "incremental" {
		t.Errorf("status after two incremental syncs: %v", st)
	}
}

// TestFailedSyncKeepsRuleset (B20): a full sync the kernel refuses (two
// overlapping subnets, which validation would never let through) leaves the
// previous ruleset whole; so does a failed incremental one, after which the
// next Apply is a full sync that repairs everything.
func TestFailedSyncKeepsRuleset(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "fail")
	b := newBackend(t, h)
	want := smallState(t)
	if err := b.Apply(t.Context(), want, nil, true); err != nil {
		t.Fatal(err)
	}
	err := b.Apply(t.Context(), overlapping(), nil, true)
	if err == nil {
		t.Fatal("full sync with overlapping subnets succeeded")
	}
	t.Logf("refused as expected: %v", err)
	sameRuleset(t, ns, Render(want, 0))
	if err := b.Apply(t.Context(), want, nil, true); err != nil { // clears the resync flag
		t.Fatal(err)
	}

	// Take an element away behind the backend's back: deleting it in the
	// next delta fails, and with it the addition in the same transaction.
	inNSExec(t, ns, "nft", "delete", "element", "inet", TableName, "dnat4-any", "{ tcp . 8080 }")
	d := must(want.Do(model.Op{Kind: "port", Delete: true, Key: "web-http"}))
	d.Ports = append(d.Ports, must(want.Do(model.Op{Kind: "port", Port: &model.PortMapping{
		ID: "app-http", Endpoint: "app", Proto: "tcp", HostPort: 9090, Port: 80}})).Ports...)
	if err := b.Apply(t.Context(), want, d, false); err == nil {
		t.Fatal("incremental sync deleting a missing element succeeded")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	if out := inNSExec(t, ns, "nft", "list", "map", "inet", TableName, "dnat4-any"); strings.Contains(out, "9090") {
		t.Fatalf("failed transaction left its addition in place:\n%s", out)
	}
	// Asked for an incremental sync, the backend does a full one.
	if err := b.Apply(t.Context(), want, &model.Delta{}, false); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st["last_sync_mode"] != "full" {
		t.Errorf("sync after a failure was %v, want full", st["last_sync_mode"])
	}
	sameRuleset(t, ns, Render(want, 0))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// overlapping builds, bypassing validation, two networks whose subnets
// overlap: the masquerade interval set refuses the second.
func overlapping() *model.Resolved {
	r := model.NewResolved()
	for i, p := range []string{"10.9.0.0/16", "10.9.1.0/24"} {
		name := string(rune('a' + i))
		r.Networks[name] = &model.RNetwork{Name: name, Bridge: "br" + name,
			Subnet: netip.MustParsePrefix(p), ICC: true, Masquerade: true}
	}
	return r
}

// uninstallLeavesNothing uninstalls b and checks that the namespace has no
// ruleset left and route_localnet is back to 0; a second Uninstall is fine.
func uninstallLeavesNothing(t *testing.T, b *Backend, ns string) {
	t.Helper()
	if err := b.Uninstall(t.Context()); err != nil {
		t.Fatal(err)
	}
	if out := inNSExec(t, ns, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("ruleset after Uninstall:\n%s", out)
	}
	if v := readSysctl(t, ns, "net.ipv4.conf.all.route_localnet"); v != "0" {
		t.Errorf("route_localnet after Uninstall = %s, want 0", v)
	}
	if err := b.Uninstall(t.Context()); err != nil {
		t.Fatalf("second Uninstall: %v", err)
	}
}
