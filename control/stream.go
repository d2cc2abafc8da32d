package control

import (
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpStream is a plain TCP raft.StreamLayer, used when a test wraps the
// stream layer (Config.WrapRaftStream); otherwise raft's own TCP transport is.
type tcpStream struct {
	ln  net.Listener
	adv net.Addr
}

var _ raft.StreamLayer = (*tcpStream)(nil)

func newTCPStream(bind string, adv net.Addr) (*tcpStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tcpStream{ln: ln, adv: adv}, nil
}

func (s *tcpStream) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *tcpStream) Close() error              { return s.ln.Close() }

func (s *tcpStream) Addr() net.Addr {
	if s.adv != nil {
		return s.adv
	}
	return s.ln.Addr()
}

func (s *tcpStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}
