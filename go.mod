module github.com/chatgate/chatgate

go 1.26.8

require (
	github.com/gorilla/websocket v1.5.3
	golang.org/x/time v0.16.0
)

require go.uber.org/goleak v1.3.0 // indirect
