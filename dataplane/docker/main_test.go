package docker

import (
	"testing"

	"github.com/portcullis/portcullis/internal/nstest"
)

// TestIPTablesInUse builds the agent: its binary goes when the tests end.
func TestMain(m *testing.M) { nstest.Main(m) }
