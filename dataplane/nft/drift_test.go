package nft

import (
	"testing"
)

// TestDriftCounted: a full sync of tables as the last sync left them
// counts no repair; after the table was flushed, or an element deleted,
// behind the backend's back, the full sync that puts it right counts one.
func TestDriftCounted(t *testing.T) {
	needRoot(t)
	ns, h := newNS(t, "drift")
	b := newBackend(t, h)
	want := smallState(t)
	for i := range 2 {
		if err := b.Apply(t.Context(), want, nil, true); err != nil {
			t.Fatal(err)
		}
		if n := b.Repaired(); n != 0 {
			t.Fatalf("full sync %d of untouched tables counted %d repairs", i+1, n)
		}
	}
	for i, drift := range [][]string{
		{"flush", "table", "inet", TableName},
		{"delete", "element", "inet", TableName, "dnat4-targets", "{ tcp . 8080 . 172.18.0.2 . 80 }"},
	} {
		inNSExec(t, ns, append([]string{"nft"}, drift...)...)
		if err := b.Apply(t.Context(), want, nil, true); err != nil {
			t.Fatal(err)
		}
		if n := b.Repaired(); n != uint64(i+1) {
			t.Errorf("after nft %v and a full sync: %d repairs, want %d", drift, n, i+1)
		}
		sameRuleset(t, ns, Render(want, 0))
	}
}
