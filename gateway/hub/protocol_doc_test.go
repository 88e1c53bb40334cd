package hub

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProtocolDocRecoveredExamples replays the example tables of
// docs/protocol.md ("recovered") against the in-process hub: each table's
// room (the history size, the room's base B and how many messages it has
// had, read from the paragraph before the table) is built, and every row's
// since must replay what the row says with the recovered it says.
func TestProtocolDocRecoveredExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	start := strings.Index(section, "\n### recovered\n")
	if start < 0 {
		t.Fatal(`protocol.md has no "### recovered" section`)
	}
	section = section[start+1:]
	if end := strings.Index(section[4:], "\n#"); end >= 0 {
		section = section[:end+4]
	}
	historyRe := regexp.MustCompile(`with history (\d+)`)
	baseRe := regexp.MustCompile(`B = (\d+)`)
	hadRe := regexp.MustCompile(`has had (\d+) messages`)
	var history int
	var base uint64
	tables := 0
	var para []string // the last paragraph before the current table
	blank := false
	lines := strings.Split(section, "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, "| `since` |") {
			switch {
			case strings.TrimSpace(line) == "":
				blank = true
			case blank:
				para, blank = []string{line}, false
			default:
				para = append(para, line)
			}
			continue
		}
		text := strings.Join(para, " ")
		if m := historyRe.FindStringSubmatch(text); m != nil {
			history, _ = strconv.Atoi(m[1])
		}
		if m := baseRe.FindStringSubmatch(text); m != nil {
			base, _ = strconv.ParseUint(m[1], 10, 64)
		}
		m := hadRe.FindStringSubmatch(text)
		if m == nil || history == 0 || base == 0 {
			t.Fatalf("the paragraph before the table at %q does not say the history, B and how many messages the room has had", line)
		}
		had, _ := strconv.Atoi(m[1])
		tables++
		i += 2 // header and separator
		for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
			cells := strings.Split(strings.Trim(lines[i], "|"), "|")
			if len(cells) != 3 {
				t.Fatalf("row %q: want 3 cells", lines[i])
			}
			since := docSeq(t, cells[0], base)
			wantReplay := docRange(t, cells[1], base)
			wantRecovered := strings.TrimSpace(cells[2]) == "`true`"
			name := fmt.Sprintf("had %d, since %s", had, strings.TrimSpace(cells[0]))
			t.Run(name, func(t *testing.T) {
				h := New(Config{History: history, SeqBase: func(time.Time) uint64 { return base }})
				defer h.Close()
				pub := newSub("pub")
				mp := mustJoin(t, h, pub, "r", nil)
				for n := 1; n <= had; n++ {
					mustPublish(t, mp, "m", "")
				}
				s := newSub("s")
				mustJoin(t, h, s, "r", &since)
				j, rest := expectJoined(t, s.take(t), "r")
				if j.Recovered == nil || *j.Recovered != wantRecovered {
					t.Errorf("joined %s; the doc says recovered %v", j.frame.Data, wantRecovered)
				}
				if got := seqs(rest); !slices.Equal(got, wantReplay) {
					t.Errorf("replayed %d messages %v; the doc says %v", len(got), shorten(got), shorten(wantReplay))
				}
			})
		}
	}
	if tables < 2 {
		t.Fatalf("found %d example tables; want the wrapped room and the room whose ring holds its whole life", tables)
	}
}

// docSeq reads a since cell: "0", "B+200" or a literal number.
func docSeq(t *testing.T, cell string, base uint64) uint64 {
	t.Helper()
	cell = strings.Fields(strings.Trim(strings.TrimSpace(cell), "`"))[0]
	if off, ok := strings.CutPrefix(cell, "B+"); ok {
		n, err := strconv.ParseUint(off, 10, 64)
		if err != nil {
			t.Fatalf("cell %q", cell)
		}
		return base + n
	}
	n, err := strconv.ParseUint(cell, 10, 64)
	if err != nil {
		t.Fatalf("cell %q", cell)
	}
	return n
}

// docRange reads a replayed cell: "nothing" or "B+151 to B+250".
func docRange(t *testing.T, cell string, base uint64) []uint64 {
	t.Helper()
	cell = strings.TrimSpace(cell)
	if cell == "nothing" {
		return nil
	}
	from, to, ok := strings.Cut(cell, " to ")
	if !ok {
		t.Fatalf("cell %q", cell)
	}
	return seqRange(docSeq(t, from, base), docSeq(t, to, base))
}

func shorten(s []uint64) string {
	if len(s) == 0 {
		return "[]"
	}
	return strconv.FormatUint(s[0], 10) + ".." + strconv.FormatUint(s[len(s)-1], 10)
}
