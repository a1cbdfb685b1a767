package dataplane

import "github.com/portcullis/portcullis/dataplane/model"

// NodeChecks answer what only the node's kernel knows about a change's
// input. Each returns a *model.Error (400, naming the field and the value)
// for a wrong value, and another error when it could not look.
type NodeChecks interface {
	// CheckNetns refuses an endpoint whose netns is not a network namespace.
	CheckNetns(e *model.REndpoint) error
	// CheckHostIP refuses a mapping whose host_ip is not the node's.
	CheckHostIP(p *model.RPort) error
	// CheckUplinks refuses uplinks that are not interfaces of the node.
	CheckUplinks(s model.Settings) error
}

// checkNode asks the node about what d brings in, before anything is
// created for it. What d only carries along (a mapping re-pointed at its
// replaced endpoint, an endpoint whose veth stays) is not asked about
// again: a value accepted once does not make an unrelated change fail.
func (c *Reconciler) checkNode(d *model.Delta) error {
	if d.Settings != nil {
		if err := c.dev.CheckUplinks(d.Settings.New); err != nil {
			return err
		}
	}
	for _, ch := range d.Endpoints {
		if ch.New != nil && (ch.Old == nil || !samePlug(ch.Old, ch.New)) {
			if err := c.dev.CheckNetns(ch.New); err != nil {
				return err
			}
		}
	}
	for _, ch := range d.Ports {
		if ch.New != nil && (ch.Old == nil || ch.Old.HostIP != ch.New.HostIP) {
			if err := c.dev.CheckHostIP(ch.New); err != nil {
				return err
			}
		}
	}
	return nil
}
