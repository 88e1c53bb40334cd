package wheel

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type counter struct {
	mu      sync.Mutex
	visits  []time.Time
	h       Handle
	onVisit func()
}

func (c *counter) Visit(now time.Time) {
	c.mu.Lock()
	c.visits = append(c.visits, now)
	c.mu.Unlock()
	if c.onVisit != nil {
		c.onVisit()
	}
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.visits)
}

// Every item is visited once per revolution, and items are spread over
// the slots.
func TestVisitsOncePerRevolution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Second, 10)
		defer w.Close()
		items := make([]*counter, 35)
		for i := range items {
			items[i] = &counter{}
			w.Add(items[i], &items[i].h)
		}
		time.Sleep(5*time.Second + time.Millisecond)
		synctest.Wait()
		for i, c := range items {
			if n := c.count(); n != 5 {
				t.Fatalf("item %d visited %d times in 5 revolutions", i, n)
			}
			c.mu.Lock()
			visits := append([]time.Time(nil), c.visits...)
			c.mu.Unlock()
			for j := 1; j < len(visits); j++ {
				if d := visits[j].Sub(visits[j-1]); d != time.Second {
					t.Fatalf("item %d: %v between visits", i, d)
				}
			}
		}
		// Spread: in the first tenth of a revolution only a tenth of
		// the items are visited.
		w2 := New(time.Second, 10)
		defer w2.Close()
		fresh := make([]*counter, 20)
		for i := range fresh {
			fresh[i] = &counter{}
			w2.Add(fresh[i], &fresh[i].h)
		}
		time.Sleep(100*time.Millisecond + time.Millisecond)
		synctest.Wait()
		visited := 0
		for _, c := range fresh {
			visited += c.count()
		}
		if visited != 2 {
			t.Fatalf("%d of 20 items visited after one tick of 10", visited)
		}
	})
}

// Removed items are not visited again; removing is idempotent and keeps
// the other items' handles right; an item may remove itself while visited.
func TestRemove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Second, 1)
		defer w.Close()
		items := make([]*counter, 5)
		for i := range items {
			items[i] = &counter{}
			w.Add(items[i], &items[i].h)
		}
		self := items[4]
		self.onVisit = func() { w.Remove(&self.h) }
		w.Remove(&items[1].h)
		w.Remove(&items[1].h)
		w.Remove(&items[0].h)
		if w.Len() != 3 {
			t.Fatalf("Len %d", w.Len())
		}
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		want := []int{0, 0, 3, 3, 1}
		for i, c := range items {
			if c.count() != want[i] {
				t.Fatalf("item %d visited %d times; want %d", i, c.count(), want[i])
			}
		}
		if w.Len() != 2 {
			t.Fatalf("Len %d", w.Len())
		}
		w.Remove(&items[2].h)
		w.Remove(&items[3].h)
		if w.Len() != 0 {
			t.Fatalf("Len %d", w.Len())
		}
	})
}
