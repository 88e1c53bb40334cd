package bench

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseProcNetTCP(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4863 0100007F:E4A8 01 000B2A20:00000000 00:00000000 00000000  1000        0 193647 2 0000000075f58e11 20 4 30 10 -1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000010:00000000 00:00000000 00000000  1000        0 1 1 0 20 4 30 10 -1
`
	q := map[[2]netip.AddrPort]int64{}
	if err := parseProcNetTCP(strings.NewReader(table), q); err != nil {
		t.Fatal(err)
	}
	v4 := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:18531"), netip.MustParseAddrPort("127.0.0.1:58536")}
	v6 := [2]netip.AddrPort{netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::1]:50000")}
	if len(q) != 2 || q[v4] != 0xB2A20 || q[v6] != 16 {
		t.Fatalf("%v", q)
	}
	if err := parseProcNetTCP(strings.NewReader("   0: zz:1 00:2 01 x:y\n"), map[[2]netip.AddrPort]int64{}); err == nil {
		t.Fatal("a malformed line was read")
	}
}

// TestSockQueuesSeesAServer: a server socket on this host shows the bytes
// a client that does not read has left it holding.
func TestSockQueuesSeesAServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	server, local := connAddrs(client)
	s := new(sockQueues)
	if q, ok := s.txQueue(server, local); !ok || q != 0 {
		t.Fatalf("idle connection: %d %v", q, ok)
	}
	// Fill the kernel's buffers: the client never reads.
	_ = srv.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	written := 0
	for {
		n, err := srv.Write(make([]byte, 64<<10))
		written += n
		if err != nil {
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(2 * sockRefresh)
		q, ok := s.txQueue(server, local)
		if ok && q > 0 && q <= int64(written) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tx_queue %d (found %v) after writing %d", q, ok, written)
		}
	}
}
