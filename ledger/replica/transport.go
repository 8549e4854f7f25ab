package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// maxMessagesBody bounds one POST of raft messages (a snapshot travels in
// one message, so this also bounds the ledger a joining node can receive
// in one snapshot).
const maxMessagesBody = 256 << 20

// transport sends raft messages to peers over mutually attested TLS: one
// sender goroutine per peer POSTs batches to https://ADDR/raft/msgs. A
// full queue or a failed POST drops messages, which raft tolerates (it
// retries), and reports the peer unreachable so raft probes it again.
type transport struct {
	client *http.Client
	report func(to uint64, snap bool, ok bool) // unreachable / snapshot status

	mu     sync.Mutex
	peers  map[uint64]*peer
	closed bool
	wg     sync.WaitGroup
}

type peer struct {
	addr string
	ch   chan *pb.Message
	stop chan struct{}
}

func newTransport(client *http.Client, report func(to uint64, snap, ok bool)) *transport {
	return &transport{client: client, report: report, peers: map[uint64]*peer{}}
}

// setPeers makes the senders match addrs (self excluded by the caller).
func (t *transport) setPeers(addrs map[uint64]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	for id, p := range t.peers {
		if a, ok := addrs[id]; !ok || a != p.addr {
			close(p.stop)
			delete(t.peers, id)
		}
	}
	for id, a := range addrs {
		if _, ok := t.peers[id]; ok {
			continue
		}
		p := &peer{addr: a, ch: make(chan *pb.Message, 4096), stop: make(chan struct{})}
		t.peers[id] = p
		t.wg.Add(1)
		go t.run(id, p)
	}
}

// send queues msgs without blocking.
func (t *transport) send(msgs []*pb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		p, ok := t.peers[m.GetTo()]
		if !ok {
			t.report(m.GetTo(), m.GetType() == pb.MessageType_MsgSnap, false)
			continue
		}
		select {
		case p.ch <- m:
		default:
			t.report(m.GetTo(), m.GetType() == pb.MessageType_MsgSnap, false)
		}
	}
}

func (t *transport) close() {
	t.setPeers(nil)
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}

func (t *transport) run(id uint64, p *peer) {
	defer t.wg.Done()
	for {
		var batch []*pb.Message
		select {
		case m := <-p.ch:
			batch = append(batch, m)
		case <-p.stop:
			return
		}
	more:
		for len(batch) < 1024 {
			select {
			case m := <-p.ch:
				batch = append(batch, m)
			default:
				break more
			}
		}
		err := t.post(p, batch)
		for _, m := range batch {
			if m.GetType() == pb.MessageType_MsgSnap {
				t.report(id, true, err == nil)
			}
		}
		if err != nil {
			t.report(id, false, false)
		}
	}
}

func (t *transport) post(p *peer, batch []*pb.Message) error {
	body, err := encodeMessages(batch)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+p.addr+"/raft/msgs", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("replica: peer %s answered %s", p.addr, resp.Status)
	}
	return nil
}

// encodeMessages writes msgs as u32 length | protobuf, repeated.
func encodeMessages(msgs []*pb.Message) ([]byte, error) {
	var b []byte
	for _, m := range msgs {
		v, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("replica: encoding raft message: %w", err)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// decodeMessages reads encodeMessages' output; anything malformed is an
// error naming the message.
func decodeMessages(b []byte) ([]*pb.Message, error) {
	var out []*pb.Message
	for i := 0; len(b) > 0; i++ {
		if len(b) < 4 {
			return nil, fmt.Errorf("replica: raft message %d: length truncated", i)
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, fmt.Errorf("replica: raft message %d: %d bytes announced, %d left", i, n, len(b)-4)
		}
		m := &pb.Message{}
		if err := proto.Unmarshal(b[4:4+n], m); err != nil {
			return nil, fmt.Errorf("replica: raft message %d: %w", i, err)
		}
		if raft.IsLocalMsg(m.GetType()) {
			return nil, fmt.Errorf("replica: raft message %d: local message type %s from the network", i, m.GetType())
		}
		out = append(out, m)
		b = b[4+n:]
	}
	return out, nil
}
