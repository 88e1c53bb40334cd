package bench

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sockQueues tells, for a connection whose server runs on this host (in
// this network namespace), how many bytes the server's socket holds that
// the client has not acknowledged: the tx_queue of the server's end in
// /proc/net/tcp and /proc/net/tcp6. While a client does not read, that
// number grows until the kernel's buffers are full and the server's writes
// block; it then stays put. The slow scenario stalls until it does.
type sockQueues struct {
	mu sync.Mutex // guards the fields below
	at time.Time  // when q was read
	q  map[[2]netip.AddrPort]int64
}

// sockRefresh is how old a reading may be before the next lookup rereads.
const sockRefresh = 40 * time.Millisecond

// txQueue returns the tx_queue of the server's socket of the connection
// server ↔ client, and false when this host shows no such socket.
func (s *sockQueues) txQueue(server, client netip.AddrPort) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q == nil || time.Since(s.at) >= sockRefresh {
		q := make(map[[2]netip.AddrPort]int64, len(s.q))
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			if r, err := os.Open(f); err == nil {
				_ = parseProcNetTCP(r, q) // a malformed table finds nothing
				r.Close()
			}
		}
		s.q, s.at = q, time.Now()
	}
	n, ok := s.q[[2]netip.AddrPort{server, client}]
	return n, ok
}

// parseProcNetTCP adds each socket of a /proc/net/tcp or tcp6 table to q,
// keyed by (local, remote) address, with its tx_queue.
func parseProcNetTCP(r io.Reader, q map[[2]netip.AddrPort]int64) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx ...
		if len(f) < 5 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		local, err1 := parseProcAddr(f[1])
		remote, err2 := parseProcAddr(f[2])
		tx, _, _ := strings.Cut(f[4], ":")
		n, err3 := strconv.ParseInt(tx, 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return fmt.Errorf("malformed line %q", sc.Text())
		}
		q[[2]netip.AddrPort{local, remote}] = n
	}
	return sc.Err()
}

// parseProcAddr reads "0100007F:4863": the address as 32-bit words each
// printed in host byte order, and the port.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// connAddrs returns a connection's two ends as the tables key them.
func connAddrs(c net.Conn) (server, client netip.AddrPort) {
	parse := func(a net.Addr) netip.AddrPort {
		ap, _ := netip.ParseAddrPort(a.String())
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return parse(c.RemoteAddr()), parse(c.LocalAddr())
}
