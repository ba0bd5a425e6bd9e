// Command example registers a service, discovers it, watches its health with
// a blocking query and uses the KV store, all through the local consul-grpc
// agent's gRPC API, with Go stubs generated from the repository's protos/.
//
// It builds with Debian's Go packages in GOPATH mode (see build.sh, which
// generates the stubs into a temporary GOPATH first):
//
//	./build.sh /tmp/consul-grpc-example && /tmp/consul-grpc-example -addr 127.0.0.1:8502
//
// Each step prints one line; the exit status is 0 when all pass, 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "consulgrpc.example/gen/consul/agent/v1"
	catalogv1 "consulgrpc.example/gen/consul/catalog/v1"
	commonv1 "consulgrpc.example/gen/consul/common/v1"
	healthv1 "consulgrpc.example/gen/consul/health/v1"
	kvv1 "consulgrpc.example/gen/consul/kv/v1"
)

// rpcTimeout is the deadline of every non-blocking call.
const rpcTimeout = 10 * time.Second

type clients struct {
	agent   agentv1.AgentServiceClient
	catalog catalogv1.CatalogServiceClient
	health  healthv1.HealthServiceClient
	kv      kvv1.KVServiceClient
}

// unary runs fn with a context that has the usual deadline.
func unary(parent context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(parent, rpcTimeout)
	defer cancel()
	return fn(ctx)
}

// serviceHealth is one blocking query: it returns when the service's index
// passes minIndex, or after wait with the same index.
func serviceHealth(parent context.Context, c clients, name string, minIndex uint64, wait time.Duration, passingOnly bool) (*healthv1.ServiceHealthResponse, error) {
	// The server may wait up to wait + wait/16; leave room for that.
	ctx, cancel := context.WithTimeout(parent, wait+wait/8+rpcTimeout)
	defer cancel()
	return c.health.ServiceHealth(ctx, &healthv1.ServiceHealthRequest{
		Service:     name,
		PassingOnly: passingOnly,
		Options:     &commonv1.QueryOptions{MinIndex: minIndex, MaxWait: durationpb.New(wait)},
	})
}

// aggregate is Consul's rule: maintenance > critical > warning > passing.
func aggregate(checks []*commonv1.HealthCheck) commonv1.HealthStatus {
	worst := commonv1.HealthStatus_HEALTH_STATUS_PASSING
	for _, c := range checks {
		if c.Status > worst {
			worst = c.Status
		}
	}
	return worst
}

func find(entries []*commonv1.ServiceEntry, id string) *commonv1.ServiceEntry {
	for _, e := range entries {
		if e.GetService().GetId() == id {
			return e
		}
	}
	return nil
}

func register(ctx context.Context, c clients, id, name, checkID string) error {
	if err := unary(ctx, func(ctx context.Context) error {
		_, err := c.agent.RegisterService(ctx, &agentv1.RegisterServiceRequest{
			Definition: &agentv1.ServiceDefinition{Service: &commonv1.Service{
				Id: id, Name: name, Port: 7070, Tags: []string{"go", "example"},
			}},
		})
		return err
	}); err != nil {
		return fmt.Errorf("RegisterService: %w", err)
	}
	if err := unary(ctx, func(ctx context.Context) error {
		_, err := c.agent.RegisterCheck(ctx, &agentv1.RegisterCheckRequest{Check: &agentv1.CheckDefinition{
			CheckId: checkID, Name: name + " TTL", ServiceId: id,
			Definition: &commonv1.CheckDefinition{Ttl: durationpb.New(30 * time.Second)},
		}})
		return err
	}); err != nil {
		return fmt.Errorf("RegisterCheck: %w", err)
	}
	return updateTTL(ctx, c, checkID, commonv1.HealthStatus_HEALTH_STATUS_PASSING, "up")
}

func updateTTL(ctx context.Context, c clients, checkID string, s commonv1.HealthStatus, output string) error {
	return unary(ctx, func(ctx context.Context) error {
		_, err := c.agent.UpdateTTL(ctx, &agentv1.UpdateTTLRequest{CheckId: checkID, Status: s, Output: output})
		if err != nil {
			return fmt.Errorf("UpdateTTL: %w", err)
		}
		return nil
	})
}

func run(ctx context.Context, c clients, name string) (err error) {
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%s-%d", name, host, os.Getpid())
	checkID := "service:" + id

	// 1. register
	if err := register(ctx, c, id, name, checkID); err != nil {
		return err
	}
	defer func() {
		derr := unary(context.Background(), func(ctx context.Context) error {
			_, err := c.agent.DeregisterService(ctx, &agentv1.DeregisterServiceRequest{ServiceId: id})
			return err
		})
		if derr != nil {
			fmt.Fprintf(os.Stderr, "deregister failed: %v\n", derr)
		} else {
			fmt.Printf("deregister ok: %s\n", id)
		}
	}()
	fmt.Printf("register ok: %s with %s\n", id, checkID)

	// 2. discover: blocking queries until the passing instance is in the catalog.
	var index uint64
	var entry *commonv1.ServiceEntry
	for entry == nil {
		resp, err := serviceHealth(ctx, c, name, index, 5*time.Second, true)
		if err != nil {
			return fmt.Errorf("ServiceHealth: %w", err)
		}
		index = resp.GetMeta().GetIndex()
		entry = find(resp.Entries, id)
	}
	var instances *catalogv1.ListServiceInstancesResponse
	if err := unary(ctx, func(ctx context.Context) (err error) {
		instances, err = c.catalog.ListServiceInstances(ctx, &catalogv1.ListServiceInstancesRequest{Service: name})
		return err
	}); err != nil {
		return fmt.Errorf("ListServiceInstances: %w", err)
	}
	listed := false
	for _, i := range instances.Instances {
		listed = listed || i.GetService().GetId() == id
	}
	if !listed {
		return errors.New("the catalog does not list the instance")
	}
	fmt.Printf("discover ok: %s on %s (%s:%d) %s index=%d\n", id, entry.Node.Name, entry.Node.Address,
		entry.Service.Port, aggregate(entry.Checks), index)

	// 3. watch: a blocking query at the current index wakes on the TTL change.
	type result struct {
		resp *healthv1.ServiceHealthResponse
		err  error
	}
	woke := make(chan result, 1)
	started := time.Now()
	go func() {
		resp, err := serviceHealth(ctx, c, name, index, 20*time.Second, false)
		woke <- result{resp, err}
	}()
	if err := updateTTL(ctx, c, checkID, commonv1.HealthStatus_HEALTH_STATUS_WARNING, "degraded"); err != nil {
		return err
	}
	r := <-woke
	if r.err != nil {
		return fmt.Errorf("ServiceHealth (watch): %w", r.err)
	}
	mine := find(r.resp.Entries, id)
	if r.resp.GetMeta().GetIndex() <= index || mine == nil || aggregate(mine.Checks) != commonv1.HealthStatus_HEALTH_STATUS_WARNING {
		return fmt.Errorf("the watch did not see the warning: index %d -> %d", index, r.resp.GetMeta().GetIndex())
	}
	fmt.Printf("watch ok: index %d -> %d, %s is %s after %s\n", index, r.resp.Meta.Index, id,
		aggregate(mine.Checks), time.Since(started).Round(time.Millisecond))

	// 4. kv
	key := "examples/go/" + id
	var put *kvv1.PutResponse
	if err := unary(ctx, func(ctx context.Context) (err error) {
		put, err = c.kv.Put(ctx, &kvv1.PutRequest{Key: key, Value: []byte("v1"), Flags: 42})
		return err
	}); err != nil || !put.Applied {
		return fmt.Errorf("Put: applied=%v err=%v", put.GetApplied(), err)
	}
	var got *kvv1.GetResponse
	if err := unary(ctx, func(ctx context.Context) (err error) {
		got, err = c.kv.Get(ctx, &kvv1.GetRequest{Key: key})
		return err
	}); err != nil || string(got.GetPair().GetValue()) != "v1" || got.GetPair().GetFlags() != 42 {
		return fmt.Errorf("Get: %v %v", got, err)
	}
	// A CAS conflict is the status ABORTED (Consul's HTTP API answers false).
	stale := uint64(1)
	err = unary(ctx, func(ctx context.Context) error {
		_, err := c.kv.Put(ctx, &kvv1.PutRequest{Key: key, Value: []byte("v2"), Cas: &stale})
		return err
	})
	if status.Code(err) != codes.Aborted {
		return fmt.Errorf("a stale CAS put should be ABORTED, got %v", err)
	}
	current := got.Pair.ModifyIndex
	if err := unary(ctx, func(ctx context.Context) (err error) {
		put, err = c.kv.Put(ctx, &kvv1.PutRequest{Key: key, Value: []byte("v2"), Cas: &current})
		return err
	}); err != nil || !put.Applied {
		return fmt.Errorf("CAS Put: applied=%v err=%v", put.GetApplied(), err)
	}
	var list *kvv1.ListResponse
	if err := unary(ctx, func(ctx context.Context) (err error) {
		list, err = c.kv.List(ctx, &kvv1.ListRequest{Prefix: "examples/go/"})
		return err
	}); err != nil {
		return fmt.Errorf("List: %w", err)
	}
	seen := false
	for _, p := range list.Pairs {
		seen = seen || (p.Key == key && string(p.Value) == "v2")
	}
	if !seen {
		return errors.New("List does not show v2")
	}
	if err := unary(ctx, func(ctx context.Context) error {
		_, err := c.kv.Delete(ctx, &kvv1.DeleteRequest{Key: key})
		return err
	}); err != nil {
		return fmt.Errorf("Delete: %w", err)
	}
	err = unary(ctx, func(ctx context.Context) error {
		got, err = c.kv.Get(ctx, &kvv1.GetRequest{Key: key})
		return err
	})
	if !(status.Code(err) == codes.NotFound || (err == nil && got.Pair == nil)) {
		return fmt.Errorf("the key is still there: %v %v", got, err)
	}
	fmt.Printf("kv ok: %s put, get, cas, list, delete\n", key)
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8502", "local agent gRPC address")
	name := flag.String("name", "go-demo", "service name")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	flag.Parse()
	if err := mainErr(*addr, *name, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func mainErr(addr, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	return run(ctx, clients{
		agent:   agentv1.NewAgentServiceClient(conn),
		catalog: catalogv1.NewCatalogServiceClient(conn),
		health:  healthv1.NewHealthServiceClient(conn),
		kv:      kvv1.NewKVServiceClient(conn),
	}, name)
}
