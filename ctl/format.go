package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// print writes v as JSON with -o json, else runs table on aligned columns.
// Tables are for people: durations and sizes in units (923ms, 58.7 MB);
// JSON keeps the numbers the API gives (nanoseconds, bytes).
func (c *cli) print(v any, table func(w io.Writer)) error {
	if c.output == "json" {
		// A list with nothing in it is [], whether it came from the agent
		// or was read while it is down: scripts iterate over it.
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
			v = []struct{}{}
		}
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// printTree prints a status map as indented "key: value" lines, sorted.
func printTree(w io.Writer, indent string, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if sub, ok := m[k].(map[string]any); ok {
			fmt.Fprintf(w, "%s%s:\n", indent, k)
			printTree(w, indent+"  ", sub)
			continue
		}
		name, val := statusValue(k, m[k])
		fmt.Fprintf(w, "%s%s:\t%s\n", indent, name, val)
	}
}

// statusValue shows a status field for people, by what its name says it
// holds: "_ns" nanoseconds and "_duration" Go durations as durations,
// "memlock" and "_bytes" as sizes. The unit suffix goes from the name.
func statusValue(key string, v any) (string, string) {
	switch v := v.(type) {
	case float64:
		switch {
		case strings.HasSuffix(key, "_ns"):
			return strings.TrimSuffix(key, "_ns"), humanDuration(time.Duration(v))
		case (key == "memlock" || strings.HasSuffix(key, "_memlock") || strings.HasSuffix(key, "_bytes")) && v >= 0:
			return key, humanSize(uint64(v))
		}
	case string:
		if d, err := time.ParseDuration(v); err == nil && strings.HasSuffix(key, "_duration") {
			return key, humanDuration(d)
		}
	}
	return key, cell(v)
}

// cell is one table cell: "-" for nothing, whole numbers without exponent,
// lists comma-separated.
func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return fmt.Sprint(int64(v))
		}
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = cell(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// humanDuration is d in its largest useful unit: 850µs, 923ms, 4.2s, 42s,
// 1m59s, 2h05m, 3d04h.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + humanDuration(-d)
	case d == 0:
		return "0s"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", int64(d))
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	day := 24 * time.Hour
	return fmt.Sprintf("%dd%02dh", d/day, d%day/time.Hour)
}

// humanSize is n bytes in decimal units, as disks and links count: 512 B,
// 58.7 MB.
func humanSize(n uint64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), -1
	// 999.95 would print as 1000.0: it goes up a unit too.
	for v >= 999.95 && unit < len("kMGTPE")-1 {
		v /= 1000
		unit++
	}
	return fmt.Sprintf("%.1f %cB", v, "kMGTPE"[unit])
}
