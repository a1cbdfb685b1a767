package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// exchange is one request and the answer that proves the container's own
// server replied.
type exchange struct {
	request []byte
	want    []byte
}

var (
	// echoExchange is for the benchmark's echo servers.
	echoExchange = exchange{request: []byte{'p'}, want: []byte{'p'}}
	// httpExchange is for busybox httpd serving the image's index page.
	httpExchange = exchange{request: []byte("GET / HTTP/1.0\r\n\r\n"), want: []byte("busybox httpd")}
)

// answerTry bounds one attempt, answerGap is the pause between attempts:
// together the resolution of the times measured with waitAnswer.
const (
	answerTry = 250 * time.Millisecond
	answerGap = 10 * time.Millisecond
)

// waitAnswer tries ex against dst from ns until the answer comes back, or
// timeout passes. A connection alone proves nothing here: dockerd listens
// on every host port it publishes (to hold it) and the kernel completes the
// handshake on that listener until a NAT rule sends the traffic on, so only
// the server's answer counts, and attempts are short for the same reason.
func waitAnswer(ns *nstest.NS, dst netip.AddrPort, ex exchange, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		last = ns.Do(func() error { return tryExchange(dst, ex) })
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v from %s gave no answer within %v: %w", dst, ns.Name, timeout, last)
		}
		time.Sleep(answerGap)
	}
}

// tryExchange runs inside the client's namespace: it dials from there.
func tryExchange(dst netip.AddrPort, ex exchange) error {
	conn, err := net.DialTimeout("tcp4", dst.String(), answerTry)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(answerTry))
	if _, err := conn.Write(ex.request); err != nil {
		return err
	}
	got := make([]byte, 0, 512)
	buf := make([]byte, 512)
	for !bytes.Contains(got, ex.want) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF && bytes.Contains(got, ex.want) {
			break
		}
		if err != nil {
			return fmt.Errorf("read: %w (after %q)", err, trimOutput(string(got)))
		}
	}
	return nil
}
