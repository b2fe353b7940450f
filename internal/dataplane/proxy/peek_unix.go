//go:build unix

package proxy

import "golang.org/x/sys/unix"

// peekFD is the RawConn.Read callback of stillOpen: one non-blocking
// MSG_PEEK. Nothing to read (EAGAIN) means open and quiet; zero bytes means
// the server closed; bytes mean it sent something unasked (an error
// response before closing, for example), which makes the connection
// unusable for a new request too.
func (uc *upConn) peekFD(fd uintptr) bool {
	n, _, err := unix.Recvfrom(int(fd), uc.peekBuf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	uc.alive = n <= 0 && (err == unix.EAGAIN || err == unix.EWOULDBLOCK)
	return true
}
