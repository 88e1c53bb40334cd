package protocol

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidName trims name and reports whether it is a display name the
// gateway shows: 1-32 runes of valid UTF-8 with nothing that could hide or
// rearrange text: no control characters, no format characters (category
// Cf: the bidi embeddings, overrides, isolates and marks, zero-width
// spaces and joiners, the byte order mark, soft hyphens, tag characters)
// and no line or paragraph separators. Users' names and the server API's
// system sender names follow it.
func ValidName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	return name, n >= 1 && n <= 32 && utf8.ValidString(name) && strings.IndexFunc(name, badNameRune) < 0
}

func badNameRune(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
