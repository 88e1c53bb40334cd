package compare

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUsageBetween accounts every kind of process between two snapshots:
// ours, kernel threads, others alive at both, born in between, ended in
// between (their time handed to the parent that waited for them), and a
// pid reused by a new process.
func TestUsageBetween(t *testing.T) {
	const self, server = 100, 200
	t0 := time.Unix(1000, 0)
	a := cpuSnapshot{at: t0, steal: 5, procs: map[int]procTimes{
		1:      {comm: "init", start: 1, cpu: 10, children: 50},
		2:      {comm: "kthreadd", start: 1, kernel: true},
		14:     {comm: "ksoftirqd/0", ppid: 2, start: 2, cpu: 3, kernel: true},
		self:   {comm: "chatbench", ppid: 1, start: 90, cpu: 1, children: 20}, // children: the builds
		server: {comm: "chatgate", ppid: self, start: 95, cpu: 0.2},
		300:    {comm: "shell", ppid: 1, start: 50, cpu: 1, children: 4},
		301:    {comm: "compile", ppid: 300, start: 60, cpu: 0.5}, // ends; shell waits for it
		400:    {comm: "old", ppid: 1, start: 70, cpu: 2},         // ends, nobody visible waits for it; its pid is reused
	}}
	b := cpuSnapshot{at: t0.Add(2 * time.Second), steal: 5.2, procs: map[int]procTimes{
		1:      {comm: "init", start: 1, cpu: 10, children: 50},
		2:      {comm: "kthreadd", start: 1, kernel: true},
		14:     {comm: "ksoftirqd/0", ppid: 2, start: 2, cpu: 3.4, kernel: true},
		self:   {comm: "chatbench", ppid: 1, start: 90, cpu: 1.1, children: 20.9}, // chatbench ran 0.9 s and was waited for
		server: {comm: "chatgate", ppid: self, start: 95, cpu: 1.4},
		300:    {comm: "shell", ppid: 1, start: 50, cpu: 1, children: 4 + 1.3}, // compile's whole life: 0.5 before a, 0.8 after
		400:    {comm: "test.bin", ppid: 300, start: 150, cpu: 0.6},            // born in between, same pid
	}}
	u := usageBetween(a, b, self, server, 0.9)
	want := Usage{
		WallS:       2,
		OursCores:   (0.1 + 0.9 + 1.2) / 2,
		KernelCores: 0.4 / 2,
		// compile's 0.8 after a (its 0.5 before a taken off shell) and the
		// new process's 0.6; old's time went to no one visible.
		OtherCores:   0.7,
		Busiest:      "shell",
		BusiestCores: 0.4,
		StealCores:   0.1,
		ServerCPUS:   1.2,
		BenchCPUS:    0.9,
	}
	if u != want {
		t.Fatalf("usage\n got %+v\nwant %+v", u, want)
	}

	// A process that ended with its parent: the grandparent collected both
	// lives; what both had used by a comes off it.
	a.procs[500] = procTimes{comm: "make", ppid: 300, start: 80, cpu: 0.1}
	a.procs[501] = procTimes{comm: "cc", ppid: 500, start: 81, cpu: 0.3}
	sh := b.procs[300]
	sh.children += 0.1 + 0.3 + 0.2 // make's and cc's whole lives; cc used 0.2 after a
	b.procs[300] = sh
	u = usageBetween(a, b, self, server, 0.9)
	if u.OtherCores != 0.8 || u.Busiest != "shell" || u.BusiestCores != 0.5 {
		t.Fatalf("other %v, busiest %s %v; want 0.8 and shell 0.5 (0.8 + 0.2 after a, over 2 s)", u.OtherCores, u.Busiest, u.BusiestCores)
	}

	// One whose parent is not known at all: its time before a comes off
	// the others' total, which some process out of sight may hold.
	a.procs[600] = procTimes{comm: "orphan", ppid: 9999, start: 85, cpu: 0.2}
	if u = usageBetween(a, b, self, server, 0.9); u.OtherCores != 0.7 {
		t.Fatalf("other %v, want (1.6 - 0.2) / 2 = 0.7", u.OtherCores)
	}
}

func TestQuietRule(t *testing.T) {
	q := QuietRule{MaxOtherCores: 0.15, MaxLoad: 1}
	cases := []struct {
		name string
		u    Usage
		want string // a part of the reason; "" for quiet
	}{
		{"quiet", Usage{OtherCores: 0.15, StealCores: 0.1, OursCores: 2, KernelCores: 0.5}, ""},
		{"another process", Usage{OtherCores: 0.4, Busiest: "go", BusiestCores: 0.35}, "other processes used 0.40 cores (limit 0.15); the busiest, go, 0.35"},
		{"steal", Usage{OtherCores: 0.01, StealCores: 0.2}, "the hypervisor took 0.20 cores"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := q.busy(tc.u)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("busy = %q, want %q", got, tc.want)
			}
		})
	}
	if why := q.busyLoad(1); why != "" {
		t.Fatalf("load 1 is not above the limit 1: %q", why)
	}
	if why := q.busyLoad(1.01); !strings.Contains(why, "1-minute load average is 1.01 (limit 1.00)") {
		t.Fatalf("busyLoad(1.01) = %q", why)
	}
}

// TestSnapshotSeesAnotherProcess reads the real /proc: a process spinning
// between two snapshots shows as another process's CPU.
func TestSnapshotSeesAnotherProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: not Linux")
	}
	snap, err := newSnapshotter()
	if err != nil {
		t.Fatal(err)
	}
	spin := exec.Command("sh", "-c", "while :; do :; done")
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = spin.Process.Kill()
		_ = spin.Wait()
	}()
	a, err := snap.take()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.procs[spin.Process.Pid]; !ok {
		t.Fatalf("the spinning process %d is not in the snapshot", spin.Process.Pid)
	}
	// Wait until it has used 0.2 s of CPU since a.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b cpuSnapshot
	for {
		if b, err = snap.take(); err != nil {
			t.Fatal(err)
		}
		if b.procs[spin.Process.Pid].cpu-a.procs[spin.Process.Pid].cpu >= 0.2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the spinning process got no CPU in 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	u := usageBetween(a, b, os.Getpid(), 0, 0)
	if got := u.OtherCores * u.WallS; got < 0.19 {
		t.Fatalf("others used %.3f CPU seconds, want at least the spinner's 0.2: %+v", got, u)
	}
	// The busiest is the spinner or, on a shared machine, something
	// busier still.
	if u.Busiest == "" || u.BusiestCores*u.WallS < 0.19 {
		t.Fatalf("busiest %q %.3f cores, want at least the spinner: %+v", u.Busiest, u.BusiestCores, u)
	}
}
