package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// A link that would close a cycle is refused through the API with 409,
// naming the cycle, and is not there afterwards.
func TestLinkCycleRefused(t *testing.T) {
	ctx := context.Background()
	be := &dptest.Recorder{}
	c := api.NewClient(dptest.StartAgent(t, t.TempDir(), be))
	if _, err := c.PutNetwork(ctx, model.Network{Name: "n1", Bridge: "pcn1", Subnet: "172.18.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b"} {
		ep := model.Endpoint{ID: id, Network: "n1", IP: fmt.Sprintf("172.18.0.%d", 2+i), Netns: "/run/netns/" + id}
		if _, err := c.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutLink(ctx, model.Link{Parent: "a", Alias: "b", Child: "b"}); err != nil {
		t.Fatalf("link a/b: %v", err)
	}
	_, err := c.PutLink(ctx, model.Link{Parent: "b", Alias: "a", Child: "a"})
	e, ok := err.(*model.Error)
	if !ok || e.Status != http.StatusConflict || e.Field != "child" || !strings.Contains(e.Msg, "b -> a -> b") {
		t.Fatalf("link b/a closing a cycle: %v, want 409 child naming b -> a -> b", err)
	}
	if _, err := c.GetLink(ctx, "b", "a"); model.StatusOf(err) != http.StatusNotFound {
		t.Errorf("refused link is there: %v", err)
	}
	if _, ok := be.Applied.Links["b/a"]; ok {
		t.Error("refused link reached the backend")
	}
}
