package nstest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// HTTPGet fetches http://addr/ from inside ns and returns the first line
// of the body. The connection is made in the namespace and the request
// written on it by hand: http.Transport would dial from a goroutine of its
// own, outside the namespace.
func HTTPGet(ns *NS, addr string, timeout time.Duration) (string, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	return strings.TrimSpace(line), err
}
