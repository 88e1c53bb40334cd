//go:build linux

package gateway

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop reads and writes its sockets with direct, non-blocking
// system calls on the descriptor: it stays open (and cannot be reused)
// until teardown, after both the read and the write side have ended, and
// is only ever shut down before that.

// socketFD is the descriptor of the socket behind rc.
func socketFD(rc syscall.RawConn) (int, error) {
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// readNow reads what the socket holds into buf without blocking: n > 0,
// or errWouldBlock, or (0, nil) at the end of the stream, or an error.
func readNow(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		default:
			return 0, err
		}
	}
}

// writeNow writes the slices of iov with one writev without blocking. It
// returns how many bytes went out; errWouldBlock when the socket is full.
func writeNow(fd int, iov []unix.Iovec) (int, error) {
	for {
		n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		default:
			return 0, errno
		}
	}
}

// shutdownNow shuts the socket down both ways.
func shutdownNow(fd int) { _ = unix.Shutdown(fd, unix.SHUT_RDWR) }

// iovec points v at b.
func iovec(v *unix.Iovec, b []byte) {
	v.Base = unsafe.SliceData(b)
	v.SetLen(len(b))
}

// maxIovecs is how many slices one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

type iovecT = unix.Iovec
