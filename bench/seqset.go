package bench

import "math/bits"

// seqSet is a set of uint64 positions (room seqs, or sender counters + 1)
// stored as a sparse map of 4096-bit blocks: dense runs cost one bit each
// and the huge, time-based starting seqs of chatgate rooms cost nothing.
// Not safe for concurrent use.
type seqSet struct {
	blocks  map[uint64]*seqBlock
	n       int
	lastKey uint64
	last    *seqBlock
}

const seqBlockBits = 4096

type seqBlock [seqBlockBits / 64]uint64

func (s *seqSet) block(key uint64, create bool) *seqBlock {
	if s.last != nil && s.lastKey == key {
		return s.last
	}
	b := s.blocks[key]
	if b == nil {
		if !create {
			return nil
		}
		if s.blocks == nil {
			s.blocks = make(map[uint64]*seqBlock)
		}
		b = new(seqBlock)
		s.blocks[key] = b
	}
	s.lastKey, s.last = key, b
	return b
}

// Add inserts v and reports whether it was new.
func (s *seqSet) Add(v uint64) bool {
	b := s.block(v/seqBlockBits, true)
	off := v % seqBlockBits
	w, m := off/64, uint64(1)<<(off%64)
	if b[w]&m != 0 {
		return false
	}
	b[w] |= m
	s.n++
	return true
}

// Has reports whether v is in the set.
func (s *seqSet) Has(v uint64) bool {
	b := s.block(v/seqBlockBits, false)
	if b == nil {
		return false
	}
	off := v % seqBlockBits
	return b[off/64]&(uint64(1)<<(off%64)) != 0
}

// Len is the number of elements.
func (s *seqSet) Len() int { return s.n }

// Union adds every element of o.
func (s *seqSet) Union(o *seqSet) {
	for key, ob := range o.blocks {
		b := s.block(key, true)
		for i, w := range ob {
			added := w &^ b[i]
			b[i] |= w
			s.n += bits.OnesCount64(added)
		}
	}
}

// CountAbove counts the elements greater than floor.
func (s *seqSet) CountAbove(floor uint64) int {
	n := 0
	fk := floor / seqBlockBits
	for key, b := range s.blocks {
		switch {
		case key < fk:
		case key > fk:
			for _, w := range b {
				n += bits.OnesCount64(w)
			}
		default:
			for v := floor + 1; v < (key+1)*seqBlockBits; v++ {
				off := v % seqBlockBits
				if b[off/64]&(uint64(1)<<(off%64)) != 0 {
					n++
				}
			}
		}
	}
	return n
}

// Max returns the largest element (0 when empty).
func (s *seqSet) Max() uint64 {
	var best uint64
	for key, b := range s.blocks {
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				v := key*seqBlockBits + uint64(i)*64 + uint64(63-bits.LeadingZeros64(b[i]))
				best = max(best, v)
				break
			}
		}
	}
	return best
}
