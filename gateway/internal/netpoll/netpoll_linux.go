//go:build linux

package netpoll

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller is a set of epoll instances, each waited on by a goroutine of its
// own; connections are spread over them.
type Poller struct {
	// static after New
	eps   []*epoll
	ready sync.WaitGroup // the loops

	next   atomic.Uint64 // spreads registrations over the instances
	closed atomic.Bool
}

// epoll is one epoll instance with its handlers. A registration's id is
// its slot in handlers (low 32 bits, from 1) and the slot's generation
// (high 32 bits), so an event for a slot freed and reused since is
// recognised and dropped.
type epoll struct {
	fd   int
	wake int // eventfd that interrupts the wait on Close

	mu    sync.RWMutex
	slots []slot // slots[0] is unused: id 0 is the wake-up
	free  []uint32
}

type slot struct {
	h   Handler
	gen uint32
}

// Registration is one connection's place in a Poller.
type Registration struct {
	ep *epoll
	id uint64
}

// addLocked takes a slot for h and returns its id; ep.mu must be held.
func (ep *epoll) addLocked(h Handler) uint64 {
	var i uint32
	if n := len(ep.free); n > 0 {
		i, ep.free = ep.free[n-1], ep.free[:n-1]
	} else {
		ep.slots = append(ep.slots, slot{})
		i = uint32(len(ep.slots) - 1)
	}
	s := &ep.slots[i]
	s.h = h
	s.gen++
	return uint64(i) | uint64(s.gen)<<32
}

// removeLocked frees id's slot; ep.mu must be held.
func (ep *epoll) removeLocked(id uint64) {
	i := uint32(id)
	if int(i) < len(ep.slots) && ep.slots[i].h != nil && ep.slots[i].gen == uint32(id>>32) {
		ep.slots[i].h = nil
		ep.free = append(ep.free, i)
	}
}

// handlerLocked is id's handler, or nil; ep.mu must be held (read).
func (ep *epoll) handlerLocked(id uint64) Handler {
	i := uint32(id)
	if int(i) < len(ep.slots) && ep.slots[i].gen == uint32(id>>32) {
		return ep.slots[i].h
	}
	return nil
}

// New starts a Poller with n epoll instances (at least one).
func New(n int) (*Poller, error) {
	p := &Poller{}
	for range max(n, 1) {
		ep, err := newEpoll()
		if err != nil {
			p.Close()
			return nil, err
		}
		p.eps = append(p.eps, ep)
		p.ready.Add(1)
		go func() {
			defer p.ready.Done()
			ep.loop(&p.closed)
		}()
	}
	return p, nil
}

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // data 0: the wake-up
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(fd)
		return nil, fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	return &epoll{fd: fd, wake: wake, slots: make([]slot, 1)}, nil
}

// setID and getID keep a registration id in the event's 64-bit data.
func setID(ev *unix.EpollEvent, id uint64) { ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32)) }
func getID(ev *unix.EpollEvent) uint64     { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

func (ep *epoll) loop(closed *atomic.Bool) {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(ep.fd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(fmt.Sprintf("netpoll: epoll_wait: %v", err)) // EBADF/EFAULT/EINVAL: a bug
		}
		for i := range events[:n] {
			ev := &events[i]
			id := getID(ev)
			if id == 0 {
				if closed.Load() {
					return
				}
				continue
			}
			var e Event
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e |= Readable
			}
			if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e |= Writable
			}
			// The read lock is held across Ready so that Remove, which
			// takes the write lock, waits for a call in progress.
			ep.mu.RLock()
			if h := ep.handlerLocked(id); h != nil && e != 0 {
				h.Ready(e)
			}
			ep.mu.RUnlock()
		}
	}
}

// Add registers the connection behind rc. Its handler may be called before
// Add returns (a socket with data waiting is readable at once).
func (p *Poller) Add(rc syscall.RawConn, h Handler) (*Registration, error) {
	if p.closed.Load() {
		return nil, ErrClosed
	}
	ep := p.eps[p.next.Add(1)%uint64(len(p.eps))]
	ep.mu.Lock()
	id := ep.addLocked(h)
	ep.mu.Unlock()
	var cerr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET}
		setID(&ev, id)
		cerr = unix.EpollCtl(ep.fd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		ep.mu.Lock()
		ep.removeLocked(id)
		ep.mu.Unlock()
		return nil, fmt.Errorf("netpoll: register: %w", err)
	}
	return &Registration{ep: ep, id: id}, nil
}

// Remove stops r's notifications; call it before closing the connection.
// Its handler is not called once Remove has returned (Remove waits for a
// call in progress, so a Handler must not call Remove from Ready).
func (r *Registration) Remove(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		_ = unix.EpollCtl(r.ep.fd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	r.ep.mu.Lock()
	r.ep.removeLocked(r.id)
	r.ep.mu.Unlock()
}

// Close stops the pollers and waits for their goroutines. Registered
// connections are not closed.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, ep := range p.eps {
		_, _ = unix.Write(ep.wake, one)
	}
	p.ready.Wait()
	for _, ep := range p.eps {
		unix.Close(ep.wake)
		unix.Close(ep.fd)
	}
	return nil
}
