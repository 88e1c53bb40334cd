//go:build !linux

package gateway

import (
	"errors"
	"syscall"
)

// The event loop needs epoll: elsewhere netpoll.New fails, the Server keeps
// the goroutine reader and writer, and these are never called.

var errNoEventLoop = errors.New("gateway: no event loop on this system")

type iovecT struct{ b []byte }

func iovec(v *iovecT, b []byte) { v.b = b }

const maxIovecs = 1024

func socketFD(syscall.RawConn) (int, error) { return -1, errNoEventLoop }
func readNow(int, []byte) (int, error)      { return 0, errNoEventLoop }
func writeNow(int, []iovecT) (int, error)   { return 0, errNoEventLoop }
func shutdownNow(int)                       {}
