package dataplane_test

import (
	"context"
	"errors"
	"testing"

	"github.com/portcullis/portcullis/dataplane"
	"github.com/portcullis/portcullis/dataplane/api"
	"github.com/portcullis/portcullis/dataplane/dptest"
	"github.com/portcullis/portcullis/dataplane/model"
)

// When the second part of a stack refuses a change, the first part has
// already applied it: the reconciler must put the previous state back.
func TestStackRestoresEveryPart(t *testing.T) {
	first, second := &dptest.Recorder{}, &dptest.Recorder{}
	c := api.NewClient(dptest.StartAgent(t, t.TempDir(), dataplane.Stack{first, second}))
	ctx := context.Background()
	if _, err := c.PutNetwork(ctx, model.Network{Name: "n", Bridge: "pc0", Subnet: "172.17.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	second.Fail = errors.New("refused")
	if _, err := c.PutNetwork(ctx, model.Network{Name: "m", Bridge: "pc1", Subnet: "172.18.0.0/16"}); err == nil {
		t.Fatal("change went through a failing part")
	}
	if _, ok := first.Applied.Networks["m"]; ok {
		t.Error("the first part kept the refused change")
	}
	if _, ok := first.Applied.Networks["n"]; !ok {
		t.Error("the first part lost the previous state")
	}
}
