package hub

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// The hub's own side of the server API beyond the conformance suite: a
// room made by a system message has a slot and a TTL like any room, and a
// ban's retry_after_ms counts down to its end.

// TestPublishSystemTakesASlot: a system message to a room the hub does not
// hold needs a slot; with every slot held by a room with members it gets
// room_limit and makes no room.
func TestPublishSystemTakesASlot(t *testing.T) {
	inBubble(t, Config{MaxRooms: 1, RoomTTL: time.Hour}, func(t *testing.T, h *Hub) {
		mustJoin(t, h, newSub("a"), "busy", nil)
		for _, name := range []string{nameInShard(t, h, "busy", true), nameInShard(t, h, "busy", false)} {
			_, perr := h.PublishSystem(context.Background(), name, "Bot", "hello")
			if perr == nil || perr.Code != protocol.CodeRoomLimit {
				t.Fatalf("PublishSystem(%q) with every slot held by a member: %v; want room_limit", name, perr)
			}
		}
		if h.Rooms() != 1 {
			t.Fatalf("Rooms() = %d; want 1", h.Rooms())
		}
	})
}

// TestPublishSystemRoomExpires: a room made by a system message, which no
// member ever joins, keeps its history for --room-ttl and is then retired.
func TestPublishSystemRoomExpires(t *testing.T) {
	const ttl = time.Minute
	inBubble(t, Config{RoomTTL: ttl}, func(t *testing.T, h *Hub) {
		ctx := context.Background()
		p, perr := h.PublishSystem(ctx, "notice", "Bot", "hello")
		if perr != nil || p.Seq != 1 || p.Recipients != 0 {
			t.Fatalf("PublishSystem to a new room: %+v, %v; want seq 1 to nobody", p, perr)
		}
		time.Sleep(ttl - time.Millisecond)
		synctest.Wait()
		if hist, _ := h.History(ctx, "notice", nil, 10); h.Rooms() != 1 || len(hist.Messages) != 1 {
			t.Fatalf("before its TTL: %d rooms, history %d messages; want the room and its message", h.Rooms(), len(hist.Messages))
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if h.Rooms() != 0 {
			t.Fatalf("Rooms() = %d after the TTL; want the room retired", h.Rooms())
		}
	})
}

// TestBanRetryAfter: a banned join says how long the ban has left, and the
// join goes through once it has ended.
func TestBanRetryAfter(t *testing.T) {
	inBubble(t, Config{}, func(t *testing.T, h *Hub) {
		ctx := context.Background()
		if perr := h.Ban(ctx, "r", "v", 10*time.Second); perr != nil {
			t.Fatal(perr)
		}
		for _, left := range []int64{10000, 6000, 1} {
			_, perr := h.Join(newSub("v"), "r", nil)
			if perr == nil || perr.Code != protocol.CodeForbidden || perr.RetryAfterMs != left+1 && perr.RetryAfterMs != left {
				t.Fatalf("a banned join with %d ms left: %v; want forbidden with retry_after_ms %d", left, perr, left)
			}
			switch left {
			case 10000:
				time.Sleep(4 * time.Second)
			case 6000:
				time.Sleep(6*time.Second - time.Millisecond)
			}
		}
		time.Sleep(time.Millisecond)
		mustJoin(t, h, newSub("v"), "r", nil)
	})
}
