package benchboundary

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// gRPC without generated code: a unary echo method declared by hand and a
// codec that passes raw bytes through, forced on both ends, so the gRPC
// measurement is HTTP/2 framing and the gRPC runtime, not protobuf.

const (
	grpcService = "cloister.bench.Echo"
	grpcMethod  = "/" + grpcService + "/Echo"
)

// rawCodec marshals *[]byte as its bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "cloister-raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// echoService is the (empty) interface the hand-written ServiceDesc
// requires its implementation to satisfy.
type echoService interface{}

type echoImpl struct{}

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*echoService)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: grpcEcho}},
	Metadata:    "cloister bench boundary (no .proto)",
}

// grpcEcho is the method handler: it returns the request.
func grpcEcho(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new([]byte)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return in, nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: grpcMethod}
	return interceptor(ctx, in, info, func(_ context.Context, req any) (any, error) { return req, nil })
}

// newGRPCServer returns a server with the echo service.
func newGRPCServer() *grpc.Server {
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	s.RegisterService(&echoServiceDesc, echoImpl{})
	return s
}

// newGRPCClient returns a client whose only connection is conn (the
// child's end of the socket pair); the target name is never resolved.
func newGRPCClient(conn net.Conn) (*grpc.ClientConn, error) {
	var once sync.Once
	dial := func(context.Context, string) (net.Conn, error) {
		var c net.Conn
		once.Do(func() { c = conn })
		if c == nil {
			return nil, errors.New("grpc: the socket pair is used up")
		}
		return c, nil
	}
	cc, err := grpc.NewClient("passthrough:///cloister-bench-host",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, fmt.Errorf("grpc client: %w", err)
	}
	return cc, nil
}

// netConn turns one end of a socket pair into a net.Conn (which holds its
// own descriptor) and closes f.
func netConn(f *os.File) (net.Conn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket pair %s: %w", f.Name(), err)
	}
	return c, nil
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	conn  chan net.Conn
	done  chan struct{}
	once  sync.Once
	local net.Addr
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{conn: make(chan net.Conn, 1), done: make(chan struct{}), local: c.LocalAddr()}
	l.conn <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conn:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept fail, and closes the connection if it was never
// accepted.
func (l *oneConnListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		select {
		case c := <-l.conn:
			c.Close()
		default:
		}
	})
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.local }
