package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A snapshot written by hand with its sections in another order (ports
// before the endpoint they publish) still loads; a garbled one fails as
// damaged, naming the file, and a mapping that does not resolve is named.
func TestStreamedSnapshot(t *testing.T) {
	write := func(t *testing.T, text string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, snapshotName), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	load := func(dir string) (int, error) {
		s, err := Open(dir)
		if err != nil {
			return 0, err
		}
		defer s.Close()
		r, err := s.LoadResolved()
		if err != nil {
			return 0, err
		}
		return len(r.Ports), nil
	}
	net := `"networks":{"n":{"name":"n","bridge":"pc0","subnet":"172.17.0.0/16"}}`
	ep := `"endpoints":{"c":{"id":"c","network":"n","ip":"172.17.0.2","netns":"/run/netns/c"}}`
	ports := `"ports":{"p":{"id":"p","endpoint":"c","proto":"tcp","host_port":8080,"port":80}}`

	n, err := load(write(t, `{"seq":3,`+net+`,`+ep+`,`+ports+`,"links":null,"later_field":[1,2]}`))
	if err != nil || n != 1 {
		t.Errorf("snapshot in order: %d ports, %v; want 1", n, err)
	}
	n, err = load(write(t, `{`+ports+`,"seq":3,`+ep+`,`+net+`}`))
	if err != nil || n != 1 {
		t.Errorf("snapshot out of order: %d ports, %v; want 1", n, err)
	}
	dir := write(t, `{"seq":3,`+net+`,`+ep+`,"ports":{"p":{"id":"p",`)
	if _, err := load(dir); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), filepath.Join(dir, snapshotName)) {
		t.Errorf("cut snapshot: %v, want ErrDamaged naming the file", err)
	}
	bad := strings.Replace(ports, `"endpoint":"c"`, `"endpoint":"gone"`, 1)
	if _, err := load(write(t, `{"seq":3,`+net+`,`+ep+`,`+bad+`}`)); err == nil || !strings.Contains(err.Error(), `port mapping "p"`) {
		t.Errorf("mapping on an unknown endpoint: %v, want it named", err)
	}
}
