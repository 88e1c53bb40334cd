package wsgate

// MaxServerHeader is the longest header AppendTextHeader writes.
const MaxServerHeader = 10

// TextFrameLen is the bytes a frame AppendTextHeader heads takes on the
// wire: its header and its n bytes of payload.
func TextFrameLen(n int) int {
	switch {
	case n < 126:
		return 2 + n
	case n < 1<<16:
		return 4 + n
	default:
		return 10 + n
	}
}

// AppendTextHeader appends the header of a server's unfragmented,
// uncompressed text frame carrying n bytes of payload (RFC 6455 5.2: FIN
// and the text opcode, no mask, the shortest length encoding), so a
// broadcast's bytes can be written to every recipient as they are, framed
// once. The bytes are the ones gorilla/websocket writes for the same
// message (TestTextHeaderMatchesGorilla).
func AppendTextHeader(b []byte, n int) []byte {
	const finText = 0x80 | opText
	switch {
	case n < 126:
		return append(b, finText, byte(n))
	case n < 1<<16:
		return append(b, finText, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(b, finText, 127, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
}
