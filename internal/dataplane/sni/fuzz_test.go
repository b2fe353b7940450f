package sni

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzParseClientHello checks that the parser never panics, that any name
// it accepts is valid and lowercased, and that Peek over the message framed
// as a TLS record agrees with ParseClientHello and replays every byte.
func FuzzParseClientHello(f *testing.F) {
	f.Add(buildHello(nil))
	f.Add(buildHello(ext(0, sniData(hostEntry(0, "Fuzz.Example")))))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ch, err := ParseClientHello(msg)
		if err == nil && ch.ServerName != "" {
			if ch.ServerName != strings.ToLower(ch.ServerName) || strings.HasSuffix(ch.ServerName, ".") || len(ch.ServerName) > maxHostNameLen {
				t.Fatalf("invalid accepted name %q", ch.ServerName)
			}
		}
		if len(msg) == 0 || len(msg) > maxRecordPayload {
			return
		}
		rec := append([]byte{22, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
		pch, wrapped, perr := PeekClientHello(newMemConn(rec), time.Second)
		if perr == nil {
			// Peek ignores record bytes after the handshake message; compare
			// with Parse of exactly the declared message.
			n := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			want, werr := ParseClientHello(msg[:n])
			if werr != nil || pch.ServerName != want.ServerName {
				t.Fatalf("Peek (%q) disagrees with Parse (%q, %v)", pch.ServerName, want.ServerName, werr)
			}
		}
		_ = err
		got, _ := io.ReadAll(wrapped)
		if !bytes.Equal(got, rec) {
			t.Fatal("replay differs from input")
		}
	})
}
