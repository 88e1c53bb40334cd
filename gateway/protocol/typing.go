package protocol

// Typing indicators: an optional, ephemeral envelope (docs/protocol.md,
// "Typing"). A gateway that relays them says so in welcome.features.

// TypeTyping is the client → server envelope {"type":"typing","room":r}:
// the user is composing a message in room r.
const TypeTyping = "typing"

// FeatureTyping is the welcome.features entry of a gateway that relays
// typing envelopes.
const FeatureTyping = "typing"

type typingFrame struct {
	Type string `json:"type"`
	Room string `json:"room"`
	From User   `json:"from"`
}

// Typing tells a room's other members that from is typing there. It is
// not sequenced and not stored: no seq, no history.
func Typing(room string, from User) []byte {
	return mustMarshal(typingFrame{Type: TypeTyping, Room: room, From: from})
}
