package enclave

import (
	"context"
	"log/slog"
	"testing"

	"github.com/cloister-dev/cloister/boundary"
	"github.com/cloister-dev/cloister/host"
	"github.com/cloister-dev/cloister/host/wire"
	"github.com/cloister-dev/cloister/tee"
)

// NewTappedEnv returns an Env over real host services (the code `cloister
// run` uses) for plat, whose host-call handler is wrap(the services'): a
// hostile host's view of every request and response crossing the rings.
func NewTappedEnv(t *testing.T, plat tee.Platform, wrap func(boundary.Handler) boundary.Handler) *Env {
	t.Helper()
	svc, err := host.NewServices(host.ServiceOptions{Platform: plat, Store: host.NewMemStore()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := wire.RegionConfig()
	region, err := boundary.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	table, err := wire.Table()
	if err != nil {
		t.Fatal(err)
	}
	server, err := boundary.NewServer(region, table, wrap(svc.Handle))
	if err != nil {
		t.Fatal(err)
	}
	server.SetDefer(svc.Defer)
	served := make(chan error, 1)
	go func() { served <- server.Serve(context.Background()) }()
	attached, err := boundary.Attach(region.File(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	env, err := newEnv(attached, string(plat.Kind()), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.close()
		server.Close()
		<-served
		svc.Close()
		region.Close()
	})
	return env
}
