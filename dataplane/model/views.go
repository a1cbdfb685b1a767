package model

// The views are what the API returns: the object as given, with every
// default the agent filled in made visible.

// View returns the network with its defaults.
func (n *RNetwork) View() Network {
	v := n.Spec
	v.Bridge, v.Gateway = n.Bridge, n.Gateway.String()
	if n.Gateway6.IsValid() {
		v.Gateway6 = n.Gateway6.String()
	}
	icc, masq := n.ICC, n.Masquerade
	v.ICC, v.Masquerade = &icc, &masq
	return v
}

// View returns the endpoint with its defaults.
func (e *REndpoint) View() Endpoint {
	v := e.Spec
	v.MAC, v.HostVeth = e.MAC.String(), e.HostIfname
	if e.Netns != "" {
		v.Ifname = e.Ifname
	}
	return v
}

// View returns the port mapping as given.
func (p *RPort) View() PortMapping { return p.Spec() }

// View returns the link with its environment variables and hosts line.
func (l *RLink) View() Link {
	v := l.Spec
	v.Env, v.Hosts = LinkEnv(l)
	return v
}
