package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// LinkEnv returns the environment variables and the /etc/hosts line that a
// legacy Docker link gives the parent (behaviour.md, section 1).
func LinkEnv(l *RLink) (env []string, hosts string) {
	prefix := strings.ToUpper(strings.ReplaceAll(l.Alias, "-", "_"))
	parentName := cmp.Or(l.Parent.Name, l.Parent.ID)
	env = append(env, fmt.Sprintf("%s_NAME=/%s/%s", prefix, parentName, l.Alias))
	ports := slices.Clone(l.Child.Exposed)
	slices.SortFunc(ports, func(a, b RPortProto) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Proto, b.Proto))
	})
	ip := l.Child.IP.String()
	for i, p := range ports {
		proto := ProtoName(p.Proto)
		url := fmt.Sprintf("%s://%s:%d", proto, ip, p.Port)
		if i == 0 {
			env = append(env, fmt.Sprintf("%s_PORT=%s", prefix, url))
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		env = append(env, pp+"="+url, pp+"_ADDR="+ip, fmt.Sprintf("%s_PORT=%d", pp, p.Port), pp+"_PROTO="+proto)
	}
	for _, kv := range l.Child.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "PATH" {
			continue
		}
		env = append(env, fmt.Sprintf("%s_ENV_%s=%s", prefix, k, v))
	}
	names := []string{ip, l.Alias}
	if l.Child.Hostname != "" {
		names = append(names, l.Child.Hostname)
	}
	if l.Child.Name != "" && l.Child.Name != l.Child.Hostname {
		names = append(names, l.Child.Name)
	}
	return env, strings.Join(names, " ")
}
