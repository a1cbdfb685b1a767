package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/nstest"
)

// iperfResult is the part of iperf3 -J output pcbench reads.
type iperfResult struct {
	End struct {
		Sum struct {
			Seconds     float64 `json:"seconds"`
			Packets     float64 `json:"packets"`
			LostPackets float64 `json:"lost_packets"`
		} `json:"sum"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperfServer runs `iperf3 -s` in ns on port until the instance ends.
func iperfServer(tb *scope, ns *nstest.NS, port int) {
	startBackground(tb, ns, "iperf3", "-s", "-p", strconv.Itoa(port))
}

// iperfSeconds is iperf3's whole-second duration for d (at least 1).
func iperfSeconds(d time.Duration) int { return max(1, int(math.Round(d.Seconds()))) }

// runIperf runs one iperf3 client from ns to dst for d and returns its
// result. A server that is still starting answers "connection refused":
// the client is retried for a few seconds.
func runIperf(ns *nstest.NS, dst netip.AddrPort, d time.Duration, extra ...string) (iperfResult, error) {
	secs := iperfSeconds(d)
	args := append([]string{"iperf3", "-c", dst.Addr().String(), "-p", strconv.Itoa(int(dst.Port())),
		"-t", strconv.Itoa(secs), "-J", "--connect-timeout", "2000"}, extra...)
	var last error
	for try := 0; try < 10; try++ {
		out, err := command{ns: ns, args: args, timeout: time.Duration(secs+20) * time.Second}.run()
		var r iperfResult
		if jerr := json.Unmarshal([]byte(out), &r); jerr == nil && r.Error == "" && err == nil {
			return r, nil
		} else if r.Error != "" {
			err = fmt.Errorf("iperf3 -c %v: %s", dst, r.Error)
		} else if err == nil {
			err = fmt.Errorf("iperf3 -c %v: %w", dst, jerr)
		}
		last = err
		if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	return iperfResult{}, last
}

// tcpThroughput is one TCP stream from client to dst, in Gbit/s; extra
// are more iperf3 client flags.
func tcpThroughput(client *nstest.NS, dst netip.AddrPort, d time.Duration, extra ...string) (float64, error) {
	r, err := runIperf(client, dst, d, extra...)
	if err != nil {
		return 0, err
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// udpRate sends 64-byte datagrams as fast as one iperf3 stream can from
// client to dst and returns the datagrams received per second, in
// thousands.
func udpRate(client *nstest.NS, dst netip.AddrPort, d time.Duration) (float64, error) {
	r, err := runIperf(client, dst, d, "-u", "-b", "0", "-l", "64")
	if err != nil {
		return 0, err
	}
	s := r.End.Sum
	if s.Seconds <= 0 {
		return 0, fmt.Errorf("iperf3 -u to %v: no duration in its result", dst)
	}
	return (s.Packets - s.LostPackets) / s.Seconds / 1000, nil
}

// medianThroughput is the median of runs tcpThroughput runs (the first
// error ends it).
func medianThroughput(runs int, client *nstest.NS, dst netip.AddrPort, d time.Duration, extra ...string) (float64, error) {
	var vs []float64
	for range runs {
		v, err := tcpThroughput(client, dst, d, extra...)
		if err != nil {
			return 0, err
		}
		vs = append(vs, v)
	}
	return summarize(vs).Median, nil
}
