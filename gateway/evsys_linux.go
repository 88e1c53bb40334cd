//go:build linux

package gateway

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readNow reads what the socket holds into buf without blocking: n > 0,
// or errWouldBlock, or (0, nil) at the end of the stream, or an error.
func readNow(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	if rerr == unix.EAGAIN {
		return 0, errWouldBlock
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}

// writeNow writes the slices of iov with one writev without blocking. It
// returns how many bytes went out; errWouldBlock when the socket is full.
func writeNow(rc syscall.RawConn, iov []unix.Iovec) (int, error) {
	var n uintptr
	var errno syscall.Errno
	if err := rc.Write(func(fd uintptr) bool {
		for {
			n, _, errno = unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			if errno != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch errno {
	case 0:
		return int(n), nil
	case unix.EAGAIN:
		return 0, errWouldBlock
	default:
		return 0, errno
	}
}

// iovec points v at b.
func iovec(v *unix.Iovec, b []byte) {
	v.Base = unsafe.SliceData(b)
	v.SetLen(len(b))
}

// maxIovecs is how many slices one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

type iovecT = unix.Iovec
