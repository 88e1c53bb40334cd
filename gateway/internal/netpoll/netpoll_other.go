//go:build !linux

package netpoll

import "syscall"

// Poller is not available on this system.
type Poller struct{}

// Registration is not available on this system.
type Registration struct{}

// New reports ErrUnsupported.
func New(int) (*Poller, error) { return nil, ErrUnsupported }

// Add reports ErrUnsupported.
func (*Poller) Add(syscall.RawConn, Handler) (*Registration, error) { return nil, ErrUnsupported }

// Remove does nothing.
func (*Registration) Remove(syscall.RawConn) {}

// Close does nothing.
func (*Poller) Close() error { return nil }
