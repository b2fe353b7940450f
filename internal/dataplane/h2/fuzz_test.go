package h2

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzConn feeds arbitrary bytes after the client preface to a
// connection with a live handler: the state machine must neither panic
// nor hang, and must end the connection when the input ends. The seed
// corpus (testdata/fuzz/FuzzConn) holds valid exchanges — requests with
// bodies, trailers, CONTINUATION, PING, SETTINGS, WINDOW_UPDATE,
// RST_STREAM — and protocol violations.
func FuzzConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	s, err := NewServer(Config{Handler: &echoHandler{}, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		cli, srv := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(srv, ConnInfo{})
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, cli)
		}()
		_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = cli.Write([]byte(http2.ClientPreface))
		_, _ = cli.Write(in)
		_ = cli.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return after the input ended")
		}
		<-drained
	})
}

// fuzzSeeds builds the seed inputs with a client Framer.
func fuzzSeeds() [][]byte {
	var out [][]byte
	add := func(build func(fr *http2.Framer, enc func(kv ...string) []byte)) {
		var buf, hb bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		fr.AllowIllegalWrites = true
		e := hpack.NewEncoder(&hb)
		enc := func(kv ...string) []byte {
			hb.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				_ = e.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), hb.Bytes()...)
		}
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		build(fr, enc)
		out = append(out, buf.Bytes())
	}
	req := func(method, path string, extra ...string) []string {
		return append([]string{":method", method, ":scheme", "https", ":path", path, ":authority", "example.com"}, extra...)
	}
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("GET", "/")...), EndStream: true, EndHeaders: true})
		_ = fr.WriteSettings()
		_ = fr.WriteSettingsAck()
		_ = fr.WritePing(false, [8]byte{1, 2, 3})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(req("GET", "/big/70000")...), EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(0, 1<<20)
		_ = fr.WriteWindowUpdate(3, 1<<20)
	})
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("POST", "/up", "content-length", "5", "te", "trailers", "cookie", "a=1", "cookie", "b=2")...), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("hel"))
		_ = fr.WriteDataPadded(1, false, []byte("lo"), []byte{0, 0, 0})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("grpc-status", "0"), EndStream: true, EndHeaders: true})
	})
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		b := enc(req("GET", "/stream/5000", "x-long", "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv")...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10], EndStream: true})
		_ = fr.WriteContinuation(1, false, b[10:20])
		_ = fr.WriteContinuation(1, true, b[20:])
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("CONNECT", "/")...), EndStream: true, EndHeaders: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(req("GET", "/", "connection", "close")...), EndStream: true, EndHeaders: true})
		_ = fr.WriteData(3, true, []byte("x"))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2, BlockFragment: enc(req("GET", "/")...), EndStream: true, EndHeaders: true})
	})
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("PUT", "/block")...), EndHeaders: true})
		_ = fr.WriteData(1, false, make([]byte, 100))
		_ = fr.WriteWindowUpdate(1, 1<<31-1)
		_ = fr.WriteRawFrame(http2.FrameData, 0, 0, []byte("x"))
	})
	add(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndStream: true, EndHeaders: true})
	})
	return out
}
