package broker

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Settings are the room settings every Broker implementation takes, so
// that clients see the same limits whichever broker serves them. The
// in-process hub and the cluster backplane each take them into their own
// configuration.
type Settings struct {
	History            int           // messages kept per room for replay (--history)
	MaxRooms           int           // rooms held at once (--max-rooms-total)
	PresenceInterval   time.Duration // at most one presence frame per room per interval (--presence-interval)
	PresenceMaxMembers int           // above this many users presence is count-only (--presence-max-members)
}

// DefaultSettings returns the defaults of every setting.
func DefaultSettings() Settings {
	return Settings{
		History:            DefaultHistory,
		MaxRooms:           DefaultMaxRooms,
		PresenceInterval:   DefaultPresenceInterval,
		PresenceMaxMembers: DefaultPresenceMaxMembers,
	}
}

// OrDefaults returns s with every zero or negative setting replaced by its
// default: what a broker built in code with some settings left out gets.
func (s Settings) OrDefaults() Settings {
	d := DefaultSettings()
	if s.History <= 0 {
		s.History = d.History
	}
	if s.MaxRooms <= 0 {
		s.MaxRooms = d.MaxRooms
	}
	if s.PresenceInterval <= 0 {
		s.PresenceInterval = d.PresenceInterval
	}
	if s.PresenceMaxMembers <= 0 {
		s.PresenceMaxMembers = d.PresenceMaxMembers
	}
	return s
}

// RegisterFlags defines a flag for every setting, using s's current values
// as defaults.
func (s *Settings) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&s.History, "history", s.History, "messages kept per room for replay on join with since")
	fs.IntVar(&s.MaxRooms, "max-rooms-total", s.MaxRooms, "rooms the gateway holds at once; when full, the longest-empty room in the shard is reclaimed or the join gets room_limit")
	fs.DurationVar(&s.PresenceInterval, "presence-interval", s.PresenceInterval, "at most one presence frame per room per interval")
	fs.IntVar(&s.PresenceMaxMembers, "presence-max-members", s.PresenceMaxMembers, "above this many users in a room, presence and joined carry only the online count")
}

// Validate reports every invalid setting at once.
func (s *Settings) Validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		v    int
	}{{"--history", s.History}, {"--max-rooms-total", s.MaxRooms}, {"--presence-max-members", s.PresenceMaxMembers}} {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", p.name, p.v))
		}
	}
	if s.PresenceInterval <= 0 {
		errs = append(errs, fmt.Errorf("--presence-interval must be positive, got %v", s.PresenceInterval))
	}
	return errors.Join(errs...)
}
