package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/dataplane/api"
)

// completeCmd is the hidden command the completion script calls with the
// words typed so far, the last being the one to complete. It prints the
// candidates, one a line; none lets the shell complete file names.
const completeCmd = "__complete"

func completion(_ context.Context, c *cli, args []string) error {
	if err := wantArgs(args, 1, "bash"); err != nil {
		return err
	}
	if args[0] != "bash" {
		return fmt.Errorf("shell %q: only bash is supported", args[0])
	}
	// The words go to pcctl as they are; it knows the commands, their
	// flags and what each argument names, and asks the agent for IDs.
	_, err := fmt.Fprintf(c.env.Stdout, `# bash completion for pcctl: source <(pcctl completion bash)
_pcctl() {
  local IFS=$'\n'
  COMPREPLY=($("${COMP_WORDS[0]}" %s "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _pcctl pcctl
`, completeCmd)
	return err
}

// complete prints the candidates for the last of words.
func complete(ctx context.Context, env Env, words []string) error {
	if len(words) == 0 {
		words = []string{""}
	}
	// Completion must not chatter: reading offline says so on stderr.
	env.Stderr = io.Discard
	c := newCLI(env)
	cur := words[len(words)-1]
	for _, w := range c.candidates(ctx, words[:len(words)-1], cur) {
		if strings.HasPrefix(w, cur) {
			fmt.Fprintln(env.Stdout, w)
		}
	}
	return nil
}

// typed is what the words before the one being completed say.
type typed struct {
	cmd     *command
	fs      *flag.FlagSet
	args    []string // the command's positional arguments
	pending string   // a flag whose value is being typed
}

// candidates are the words that can stand where cur is.
func (c *cli) candidates(ctx context.Context, done []string, cur string) []string {
	t := c.walk(done)
	if t.pending != "" {
		return c.flagValues(ctx, t.fs, t.pending)
	}
	if strings.HasPrefix(cur, "-") {
		var names []string
		t.fs.VisitAll(func(f *flag.Flag) { names = append(names, "-"+f.Name) })
		return names
	}
	if t.cmd == nil {
		return commandNames()
	}
	kinds := t.cmd.argKinds
	i := len(t.args)
	if n := len(kinds); n > 0 && i >= n && strings.HasSuffix(kinds[n-1], "...") {
		i = n - 1
	}
	if i >= len(kinds) {
		return nil
	}
	return c.values(ctx, strings.TrimSuffix(kinds[i], "..."), t.args)
}

// walk reads the typed words as Run would: global flags, the command, its
// flags and arguments. Flag values are set, so -socket and -bpffs apply to
// the look-ups.
func (c *cli) walk(words []string) typed {
	t := typed{fs: flag.NewFlagSet("pcctl", flag.ContinueOnError)}
	c.globalFlags(t.fs)
	ended := false // after "--"
	for _, w := range words {
		switch {
		case t.pending != "" && w == "=":
			// bash breaks -o=json into -o, = and json: the value follows.
		case t.pending != "":
			t.fs.Set(t.pending, w)
			t.pending = ""
		case !ended && w == "--":
			ended = true
		case !ended && strings.HasPrefix(w, "-") && w != "-":
			name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
			f := t.fs.Lookup(name)
			switch {
			case f == nil:
			case hasVal:
				t.fs.Set(name, val)
			case !isBool(f):
				t.pending = name
			}
		case t.cmd == nil:
			cmd, ok := lookup(w)
			if !ok {
				return typed{cmd: &command{}, fs: t.fs} // nothing follows an unknown command
			}
			t.cmd = &cmd
			t.fs, _ = c.commandFlags(cmd)
		default:
			t.args = append(t.args, w)
		}
	}
	return t
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func commandNames() []string {
	var names []string
	for _, cmd := range commands {
		names = append(names, cmd.name)
	}
	return names
}

// flagKinds say what the values of flags name, by flag name (a name means
// the same in every command that has it).
var flagKinds = map[string]string{
	"o":        "format",
	"proto":    "proto",
	"endpoint": "endpoint",
	"dump":     "map",
	"type":     "event-type",
}

func (c *cli) flagValues(ctx context.Context, fs *flag.FlagSet, name string) []string {
	if flagKinds[name] == "map" {
		// The map names are in the directory the -bpffs in force names.
		ents, _ := os.ReadDir(filepath.Join(fs.Lookup("bpffs").Value.String(), "maps"))
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	return c.values(ctx, flagKinds[name], nil)
}

// values are the candidates of a kind of word; args are the command's
// arguments before it (unlink's alias belongs to the parent before it).
func (c *cli) values(ctx context.Context, kind string, args []string) []string {
	switch kind {
	case "format":
		return formats
	case "proto":
		return protos
	case "event-type":
		return []string{"drop", "nat", "drop,nat"}
	case "shell":
		return []string{"bash"}
	case "command":
		return commandNames()
	case "endpoint", "port", "network":
		return c.keys(ctx, kind+"s", func(map[string]any) bool { return true }, columns[kind+"s"][0])
	case "alias":
		if len(args) == 0 {
			return nil
		}
		return c.keys(ctx, "links", func(r map[string]any) bool { return r["parent"] == args[0] }, "alias")
	}
	return nil
}

// keys lists the col of the rows of kind that keep selects, from the agent
// (or the state directory when it is down), briefly: a shell is waiting.
func (c *cli) keys(ctx context.Context, kind string, keep func(map[string]any) bool, col string) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c.client = api.NewClient(c.socket)
	rows, err := c.rows(ctx, kind)
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range rows {
		if s, ok := r[col].(string); ok && keep(r) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
