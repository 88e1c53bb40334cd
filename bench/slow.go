package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The slow scenario's plan. A slow listener is evicted with 4008 when the
// gateway's queue for it (welcome.limits.queue_bytes) overflows, which
// happens only once the kernel buffers between the two (the gateway
// socket's send buffer, the listener's receive buffer) are full too. And
// it must happen before the gateway's write timeout
// (welcome.limits.write_timeout_ms) runs out on the write that blocked
// when those buffers filled, or the gateway drops the socket without a
// close frame (1006). So the listener must receive
//
//	(queue + kernel) / overflow time
//
// bytes per second, and stall for longer than the overflow time but less
// than the write timeout after the gateway's writes block.
//
// What the kernel holds depends on the connection's history: on loopback
// the gateway socket's send buffer grows, in steps and even while the
// listener does not read, from 16 KiB to about 1.2 MiB (holding some 700
// KiB). So where the gateway runs on this host chatbench watches it
// instead of guessing: a stall ends once the gateway socket's unacked
// bytes (/proc/net/tcp, sockq.go) have stood still for 0.65 of the write
// timeout, the gateway's writes blocked all that time; the rate is sized
// so its queue overflows within 0.75 of that. Where it cannot see the
// gateway's socket a stall is 0.8 of the write timeout and the kernel's
// share is counted from its TCP memory settings.
//
// planSlow reads the limits from a probe connection's welcome, sizes what
// the command line left open (--slow-stall, --size, --rate, --senders) and
// says when the flags it was given cannot work.

// SlowPlan is how a slow run set out to overflow the gateway's queue.
type SlowPlan struct {
	// Sized lists the flags chatbench chose from the gateway's limits
	// because the command line did not give them.
	Sized []string `json:"sized"`
	// QueueBytes and WriteTimeoutMs are the gateway's welcome.limits (0
	// when it does not announce them).
	QueueBytes     int64 `json:"queue_bytes"`
	WriteTimeoutMs int64 `json:"write_timeout_ms"`
	// StallUntilBlocked says a stall lasts until the gateway's writes
	// have been blocked for StallS (seen on this host); otherwise a stall
	// is StallS (0: until the window ends).
	StallUntilBlocked bool    `json:"stall_until_blocked"`
	StallS            float64 `json:"stall_s"`
	// KernelBytes is what the kernel held between the gateway and one
	// slow listener when the gateway's writes blocked: the most seen, or,
	// without StallUntilBlocked, an estimate.
	KernelBytes int64 `json:"kernel_bytes"`
	// BytesPerS is what each listener receives by the plan; OverflowS how
	// long the gateway's queue should take to overflow, from the moment
	// its writes block (StallUntilBlocked) or from the stall's start.
	BytesPerS float64 `json:"bytes_per_s"`
	OverflowS float64 `json:"overflow_s"`
	// Problem says why the slow listeners cannot be expected to overflow
	// the queue; empty when the plan holds.
	Problem string `json:"problem,omitempty"`
}

// envelopeOverhead is a message envelope's bytes beyond its text (type,
// room, seq, from, ts), on the low side: the plan then sends a little more
// than it needs, never less.
const envelopeOverhead = 120

// slowMaxSize caps the text size the plan chooses: a send envelope must
// stay within the gateway's frame limit (--max-frame-bytes, not announced).
const slowMaxSize = 4096

// overflowShare is the part of the time available (the stall, at most the
// write timeout) by which the queue should overflow: the kernel's share is
// an estimate, and this leaves it a third of the queue and kernel bytes as
// slack.
const overflowShare = 0.75

// welcomeLimits is welcome.limits as the gateway announces it.
type welcomeLimits struct {
	SendPerSec     float64 `json:"send_per_sec"`
	MaxTextBytes   int     `json:"max_text_bytes"`
	QueueBytes     int64   `json:"queue_bytes"`
	WriteTimeoutMs int64   `json:"write_timeout_ms"`
	// SharedSendPerSec is the send budget shared by a user's or an
	// address's connections.
	SharedSendPerSec float64 `json:"shared_send_per_sec"`
}

// planSlow sizes cfg's slow flags that were not given, from a probe
// connection's welcome, and returns the plan; nil for --proto raw, whose
// server announces nothing.
func planSlow(ctx context.Context, cfg *Config) *SlowPlan {
	if cfg.Proto == ProtoRaw {
		return nil
	}
	p := &SlowPlan{Sized: []string{}, StallS: cfg.SlowStall.Seconds()}
	lim, rcvbuf, visible, err := probeLimits(ctx, cfg)
	if err != nil {
		p.Problem = fmt.Sprintf("could not read the gateway's limits (%v), so nothing was sized", err)
		return p
	}
	p.QueueBytes, p.WriteTimeoutMs = lim.QueueBytes, lim.WriteTimeoutMs
	p.KernelBytes = kernelEstimate(rcvbuf, cfg.SlowRcvBuf > 0)
	if p.QueueBytes <= 0 || p.WriteTimeoutMs <= 0 {
		p.Problem = "the gateway announces no queue_bytes and write_timeout_ms in welcome.limits (an older chatgate?), so nothing was sized"
		return p
	}
	given := func(name string) bool { return cfg.given[name] }
	sized := func(name string) { p.Sized = append(p.Sized, name) }
	writeTimeout := time.Duration(p.WriteTimeoutMs) * time.Millisecond
	if !given("slow-stall") {
		cfg.SlowStall = writeTimeout * 8 / 10
		if visible {
			cfg.SlowStall = writeTimeout * 65 / 100
		}
		p.StallUntilBlocked = visible
		sized("slow-stall")
	}
	p.StallS = cfg.SlowStall.Seconds()
	// The gateway's writes may block for at most the write timeout: past
	// it the socket is dropped (1006). So the queue must overflow within
	// the stall that follows the block, or, not knowing when the writes
	// block, within the stall less what the kernel takes first.
	budget := writeTimeout
	if cfg.SlowStall > 0 {
		budget = min(budget, cfg.SlowStall)
	}
	backlog := float64(p.QueueBytes + p.KernelBytes)
	if p.StallUntilBlocked {
		backlog = float64(p.QueueBytes)
	}
	need := backlog / (overflowShare * budget.Seconds()) // bytes/s to each listener
	if !given("size") && lim.MaxTextBytes > 0 {
		cfg.Size = min(max(lim.MaxTextBytes, minTextBytes), slowMaxSize)
		sized("size")
	}
	env := float64(cfg.Size + envelopeOverhead)
	msgs := need / env // per second, over all senders of the room
	perSender := math.Inf(1)
	if lim.SendPerSec > 0 {
		perSender = 0.8 * lim.SendPerSec // headroom under the gateway's send limit
	}
	switch {
	case !given("rate") && !given("senders"):
		cfg.Senders = max(cfg.Senders, 1, int(math.Ceil(msgs/perSender)))
		cfg.Rate = msgs / float64(cfg.Senders)
		sized("senders")
		sized("rate")
	case !given("senders") && cfg.Rate > 0:
		cfg.Senders = max(cfg.Senders, int(math.Ceil(msgs/cfg.Rate)))
		sized("senders")
	case !given("rate") && cfg.Senders > 0:
		cfg.Rate = msgs / float64(cfg.Senders)
		sized("rate")
	}
	cfg.Rate = math.Min(math.Ceil(cfg.Rate*10)/10, maxRate)
	cfg.Senders = min(cfg.Senders, cfg.Conns-1)

	p.BytesPerS = round3(float64(max(cfg.Senders, 0)) * cfg.Rate * env)
	if p.BytesPerS > 0 {
		p.OverflowS = round3(backlog / p.BytesPerS)
	}
	listeners := cfg.Conns - max(cfg.Senders, 0)
	sendTotal, sendAllowed, who := sharedSendCap(cfg, lim.SharedSendPerSec)
	switch {
	case int(float64(listeners)*cfg.SlowShare) < 1:
		p.Problem = fmt.Sprintf("%d sender(s) leave %d listener(s), and --slow-share %g of them is less than one slow listener: raise --conns or --slow-share", cfg.Senders, listeners, cfg.SlowShare)
	case cfg.Rate > perSender*1.25:
		p.Problem = fmt.Sprintf("%g messages/s per sender is above the gateway's send limit of %g/s (welcome.limits.send_per_sec): the excess is rejected; give more --senders or raise the gateway's --send-rate", cfg.Rate, lim.SendPerSec)
	case lim.SharedSendPerSec > 0 && sendTotal > sendAllowed:
		p.Problem = fmt.Sprintf("the senders must send %g messages/s in all, but the gateway lets %s send %g/s (welcome.limits.shared_send_per_sec): the excess is rejected; spread the senders with --source-ips or raise the gateway's --user-send-rate", sendTotal, who, lim.SharedSendPerSec)
	case p.BytesPerS <= 0 || p.OverflowS >= budget.Seconds():
		what := fmt.Sprintf("the gateway's queue (%s) and the kernel's buffers (about %s)", fmtBytes(float64(p.QueueBytes)), fmtBytes(float64(p.KernelBytes)))
		if p.StallUntilBlocked {
			what = fmt.Sprintf("the gateway's queue (%s) once its writes block", fmtBytes(float64(p.QueueBytes)))
		}
		p.Problem = fmt.Sprintf("slow listeners receive about %s/s, so filling %s takes %.1fs, longer than %s; raise --rate, --senders or --size",
			fmtBytes(p.BytesPerS), what, p.OverflowS, budgetName(cfg.SlowStall, writeTimeout))
	case cfg.SlowStall > 0 && cfg.Duration-cfg.SlowAfter < cfg.SlowStall:
		p.Problem = fmt.Sprintf("the window leaves %v after --slow-after, less than one stall of %v: lengthen --duration", cfg.Duration-cfg.SlowAfter, cfg.SlowStall)
	case p.StallUntilBlocked && cfg.Duration-cfg.SlowAfter < time.Duration((float64(p.KernelBytes)/p.BytesPerS)*float64(time.Second))+cfg.SlowStall:
		p.Problem = fmt.Sprintf("the window leaves %v after --slow-after, and at %s/s the kernel's buffers (about %s) take %.1fs to fill before the gateway's writes block for the %v stall: lengthen --duration",
			cfg.Duration-cfg.SlowAfter, fmtBytes(p.BytesPerS), fmtBytes(float64(p.KernelBytes)), float64(p.KernelBytes)/p.BytesPerS, cfg.SlowStall)
	}
	return p
}

func budgetName(stall, writeTimeout time.Duration) string {
	if stall > 0 && stall < writeTimeout {
		return fmt.Sprintf("a stall of %v", stall)
	}
	return fmt.Sprintf("the gateway's write timeout of %v, after which it drops the socket (1006)", writeTimeout)
}

// probeLimits opens one connection as a slow listener would, reads the
// welcome's limits, the socket's receive buffer as the kernel set it and
// whether this host shows the gateway's end (sockQueues), and closes it.
func probeLimits(ctx context.Context, cfg *Config) (lim welcomeLimits, rcvbuf int, visible bool, err error) {
	o := dialOpts{proto: cfg.Proto, timeout: cfg.HandshakeTimeout, creds: cfg.creds, conn: cfg.Conns}
	if len(cfg.SourceIPs) > 0 {
		o.src = cfg.SourceIPs[0]
	}
	if cfg.SlowRcvBuf > 0 {
		o.rcvBuf, o.mss = cfg.SlowRcvBuf, slowMSS
	}
	ws, _, err := dial(ctx, cfg.URLs[0], o)
	if err != nil {
		return lim, 0, false, err
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		return lim, 0, false, err
	}
	first, _, _ := bytes.Cut(data, []byte{'\n'})
	var w struct {
		Type   string        `json:"type"`
		Limits welcomeLimits `json:"limits"`
	}
	if err := json.Unmarshal(first, &w); err != nil || w.Type != "welcome" {
		return lim, 0, false, fmt.Errorf("first frame is not a welcome: %.100q", first)
	}
	_, visible = new(sockQueues).txQueue(connAddrs(ws.NetConn()))
	if tc, ok := ws.NetConn().(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				rcvbuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			})
		}
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	// Wait for the gateway's answer, so its slot for this connection is
	// free before the members connect.
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break
		}
	}
	return w.Limits, rcvbuf, visible, nil
}

// kernelEstimate is what the kernel may hold between the gateway and one
// slow listener: the listener's receive buffer, and what the gateway
// socket's send buffer holds. On loopback with a small receive window
// (--slow-rcvbuf) the send buffer grows to about 1.2 MiB and holds some
// 700 KiB (48 times tcp_wmem's default of 16 KiB); without one the receive
// buffer autotunes up to tcp_rmem's maximum and the send buffer to
// tcp_wmem's.
func kernelEstimate(rcvbuf int, smallWindow bool) int64 {
	wdef, wmax := tcpMem("tcp_wmem", 16384, 4194304)
	if smallWindow {
		return int64(rcvbuf) + min(wmax, 48*wdef)
	}
	_, rmax := tcpMem("tcp_rmem", 131072, 6291456)
	return rmax + wmax
}

// tcpMem reads the default and maximum of /proc/sys/net/ipv4/name ("min
// default max"), or returns the given fallbacks.
func tcpMem(name string, def, maxv int64) (int64, int64) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
	if err != nil {
		return def, maxv
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return def, maxv
	}
	d, err1 := strconv.ParseInt(f[1], 10, 64)
	m, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return def, maxv
	}
	return d, m
}

// throttle makes a slow member slow: from stallAt until the window is over
// it stops reading for a stall at a time, reading freely for slowReadPhase
// in between; with SlowStall 0 it stops until the window is over. A stall
// is SlowStall, or, when the engine watches the gateway's sockets, lasts
// until the gateway's writes to this member block and SlowStall more.
func (m *member) throttle() {
	e := m.e
	at := e.stallAt.Load()
	if at == 0 || time.Now().UnixNano() < at {
		return
	}
	select {
	case <-e.resume:
		return
	default:
	}
	if e.cfg.SlowStall <= 0 {
		<-e.resume
		return
	}
	if time.Now().Before(m.nextStall) {
		return
	}
	if e.sockets != nil {
		m.stallUntilBlocked()
	} else {
		t := time.NewTimer(e.cfg.SlowStall)
		select {
		case <-t.C:
		case <-e.resume:
			t.Stop()
		}
	}
	m.nextStall = time.Now().Add(slowReadPhase)
}

// stallPoll is how often a stalled member looks at the gateway's socket.
const stallPoll = 50 * time.Millisecond

// stallUntilBlocked stops reading until the gateway's socket to this
// member has held the same bytes for SlowStall: its writes have been
// blocked that long, long enough for its queue to overflow. (The kernel
// grows the socket's send buffer in steps while the member does not read,
// so shorter pauses come and go first.) A socket this host does not show
// makes it a plain stall of SlowStall.
func (m *member) stallUntilBlocked() {
	e := m.e
	tick := time.NewTicker(stallPoll)
	defer tick.Stop()
	start := time.Now()
	var still time.Time // since when the socket has held last
	last, seen := int64(-1), true
	for {
		select {
		case <-e.resume:
			return
		case now := <-tick.C:
			if seen {
				var q int64
				if q, seen = e.sockets.txQueue(m.serverAddr, m.localAddr); seen && q != last {
					last, still = q, now
					continue
				}
			}
			if !seen && now.Sub(start) >= e.cfg.SlowStall || seen && now.Sub(still) >= e.cfg.SlowStall {
				if seen {
					e.noteKernel(last)
				}
				return
			}
		}
	}
}

// noteKernel records what a gateway socket held when its writes blocked.
func (e *engine) noteKernel(q int64) {
	for {
		seen := e.kernelSeen.Load()
		if q <= seen || e.kernelSeen.CompareAndSwap(seen, q) {
			return
		}
	}
}

// slowMSS is the TCP segment size slow members announce.
const slowMSS = 1200

// slowReadPhase is how long a slow member reads between stalls.
const slowReadPhase = 500 * time.Millisecond
