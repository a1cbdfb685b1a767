package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
)

// tellSystemd notifies, and logs when that fails: the service manager then
// times the start out, and the log says why.
func tellSystemd(log *slog.Logger, state string) {
	if err := notify(state); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

// notify tells the service manager about the agent's state, as sd_notify(3)
// does: one datagram to the unix socket named by $NOTIFY_SOCKET (a leading
// "@" names an abstract socket, which package net understands). Started
// by anything but a Type=notify unit, there is no such socket and notify
// does nothing.
func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] != '/' && path[0] != '@' {
		// systemd 256 also offers vsock: addresses, for virtual machines.
		return fmt.Errorf("NOTIFY_SOCKET %q: only unix socket paths are supported", path)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify the service manager on %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify the service manager on %s: %w", path, err)
	}
	return nil
}
