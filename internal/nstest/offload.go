package nstest

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool ioctl commands (linux/ethtool.h) for the checksum offloads.
const (
	ethtoolGRXCSUM = 0x14
	ethtoolSRXCSUM = 0x15
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// SetChecksumOffload sets the transmit and receive checksum offloads of
// dev in n, as `ethtool -K dev tx on|off rx on|off` does. With transmit
// offload off, a packet whose checksum was left to the device
// (CHECKSUM_PARTIAL: the field holds the pseudo header's sum) gets it
// computed in software when it leaves through dev, from whatever the field
// holds then, and TSO goes off with it; with receive offload off, a veth
// no longer marks what it receives as verified (CHECKSUM_UNNECESSARY), so
// the receiving stack checks every checksum itself.
func (n *NS) SetChecksumOffload(dev string, tx, rx bool) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, s := range []struct {
			set, get uint32
			on       bool
			what     string
		}{{ethtoolSTXCSUM, ethtoolGTXCSUM, tx, "tx"}, {ethtoolSRXCSUM, ethtoolGRXCSUM, rx, "rx"}} {
			v := ethtoolValue{cmd: s.set}
			if s.on {
				v.data = 1
			}
			if err := ethtoolIoctl(fd, dev, &v); err != nil {
				return fmt.Errorf("%s: %s checksum offload %v: %w", n, dev, s.on, err)
			}
			got := ethtoolValue{cmd: s.get}
			if err := ethtoolIoctl(fd, dev, &got); err != nil {
				return fmt.Errorf("%s: read %s checksum offload of %s: %w", n, s.what, dev, err)
			}
			if (got.data != 0) != s.on {
				return fmt.Errorf("%s: %s %s checksum offload stayed %v", n, dev, s.what, got.data != 0)
			}
		}
		return nil
	})
}

func ethtoolIoctl(fd int, dev string, v *ethtoolValue) error {
	var ifr ifreqData
	if len(dev) >= len(ifr.name) {
		return fmt.Errorf("interface name %q too long", dev)
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return errno
	}
	return nil
}
