package devbroker

import (
	"encoding/binary"
	"errors"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxRequestBytes bounds the size of one request frame, as Kafka's
// socket.request.max.bytes does (default 100 MiB there).
const maxRequestBytes = 100 << 20

// errBadFrame is returned to kfake's connection reader when a client sends
// something that is not a Kafka request; kfake then drops the connection.
var errBadFrame = errors.New("devbroker: not a Kafka request frame")

// guardListener wraps every accepted connection in a guardConn.
//
// kfake trusts its clients: a frame with an unknown API key panics the whole
// process (nil request), and a huge size prefix (e.g. "GET " from an HTTP
// client = 1.2 GB) is allocated as is. An embedded broker on a well-known
// port must survive port scanners and misdirected clients, so frames are
// checked before kfake sees them.
type guardListener struct {
	net.Listener
	addr net.Addr // advertised address reported by Addr
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c}, nil
}

func (l *guardListener) Addr() net.Addr { return l.addr }

// guardConn follows the request framing of the byte stream read through it
// ([4-byte size][2-byte api key][2-byte version]...) and fails the read that
// would hand kfake an oversized frame or an unknown api key.
type guardConn struct {
	net.Conn
	hdr  [6]byte // size + api key of the frame being started
	hdrN int     // bytes of hdr seen
	left int64   // body bytes of the current frame not yet seen, after hdr
}

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if ferr := c.scan(p[:n]); ferr != nil {
		return 0, ferr
	}
	return n, err
}

// scan advances the framing state over b, the bytes just read.
func (c *guardConn) scan(b []byte) error {
	for len(b) > 0 {
		if c.left > 0 {
			skip := int64(len(b))
			if skip > c.left {
				skip = c.left
			}
			c.left -= skip
			b = b[skip:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN >= 4 {
			size := int64(binary.BigEndian.Uint32(c.hdr[:4]))
			// api key, version, correlation id, client id length.
			if size < 10 || size > maxRequestBytes {
				return errBadFrame
			}
		}
		if c.hdrN == len(c.hdr) {
			key := int16(binary.BigEndian.Uint16(c.hdr[4:6]))
			if key < 0 || kmsg.RequestForKey(key) == nil {
				return errBadFrame
			}
			c.left = int64(binary.BigEndian.Uint32(c.hdr[:4])) - 2
			c.hdrN = 0
		}
	}
	return nil
}
