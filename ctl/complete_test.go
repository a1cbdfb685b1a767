package ctl

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/dptest"
)

// complete runs the completion helper as the script does and returns its
// candidates.
func completeWords(t *testing.T, sock string, words ...string) []string {
	t.Helper()
	out, err := pcctl(t, sock, append([]string{completeCmd}, words...)...)
	if err != nil {
		t.Fatalf("complete %q: %v", words, err)
	}
	return strings.Fields(out)
}

func TestCompletion(t *testing.T) {
	sock := dptest.StartAgent(t, t.TempDir(), &dptest.Recorder{})
	if err := putSetup(sock); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"publish", "web80", "web", "8080:80"}, {"publish", "db5432", "db", "5432:5432"}, {"link", "web", "db", "database"}} {
		if _, err := pcctl(t, sock, args...); err != nil {
			t.Fatal(err)
		}
	}
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		sock  string
		words []string
		want  []string
	}{
		{sock, []string{""}, commandNames()},
		{sock, []string{"ma"}, []string{"maps"}},
		{sock, []string{"-o", ""}, formats},
		{sock, []string{"ports", "-o", "j"}, []string{"json"}},
		{sock, []string{"ports", "-o", "=", "j"}, []string{"json"}},
		{sock, []string{"-o", "=", "json", "unpublish", ""}, []string{"db5432", "web80"}},
		{sock, []string{"-o", "json", "publish", "x", ""}, []string{"db", "web"}},
		{sock, []string{"unpublish", ""}, []string{"db5432", "web80"}},
		{sock, []string{"networks", ""}, []string{"default"}},
		{sock, []string{"endpoints", "web", "d"}, []string{"db"}},
		{sock, []string{"link", "web", ""}, []string{"db", "web"}},
		{sock, []string{"link", "web", "db", ""}, nil},
		{sock, []string{"unlink", "web", ""}, []string{"database"}},
		{sock, []string{"unlink", "db", ""}, nil},
		{sock, []string{"trace", "-endpoint", "w"}, []string{"web"}},
		{sock, []string{"flows", "-proto", "icmp"}, []string{"icmp", "icmpv6"}},
		{sock, []string{"help", "unl"}, []string{"unlink"}},
		{sock, []string{"completion", ""}, []string{"bash"}},
		{sock, []string{"frobnicate", ""}, nil},
		// -socket typed on the line, before or after the command, is
		// where the IDs come from.
		{nowhere, []string{"-socket", sock, "unpublish", ""}, []string{"db5432", "web80"}},
		{nowhere, []string{"unpublish", "-socket", sock, ""}, []string{"db5432", "web80"}},
		{nowhere, []string{"unpublish", ""}, nil},
	} {
		got := completeWords(t, tc.sock, tc.words...)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("complete %q: got %q, want %q", tc.words, got, want)
		}
	}
	flags := completeWords(t, sock, "maps", "-")
	for _, f := range []string{"-dump", "-limit", "-bpffs", "-o", "-socket"} {
		if !slices.Contains(flags, f) {
			t.Errorf("complete maps -: no %s in %q", f, flags)
		}
	}
}

// The script hands bash's words to the helper as they are, and its lines
// back as the candidates.
func TestCompletionScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := pcctl(t, "", "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pcctl(t, "", "completion", "fish"); err == nil {
		t.Error("fish accepted")
	}
	path := filepath.Join(t.TempDir(), "pcctl.bash")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	// A stand-in pcctl prints the words it was given, one a line.
	out, err := exec.Command(bash, "-c", `source "$1"
pcctl() { printf '%s\n' "$@"; }
COMP_WORDS=(pcctl -o json unpublish "we")
COMP_CWORD=4
_pcctl
printf '[%s]\n' "${COMPREPLY[@]}"
complete -p pcctl`, "bash", path).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := "[__complete]\n[-o]\n[json]\n[unpublish]\n[we]\ncomplete -o default -F _pcctl pcctl\n"
	if string(out) != want {
		t.Errorf("the script gave:\n%s\nwant:\n%s", out, want)
	}
}
