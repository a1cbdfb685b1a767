package conformance

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/internal/nstest"
)

var backend = flag.String("backend", "nftables", "backend under test: nftables or ebpf")

// agentBinary is built once for every row; buildErr fails every row.
var (
	agentBinary string
	buildErr    error
)

var tally struct {
	sync.Mutex
	passed, failed, skipped int
}

func TestMain(m *testing.M) {
	flag.Parse()
	agentBinary, buildErr = nstest.BuildAgent()
	if buildErr != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", buildErr)
	}
	code := m.Run()
	nstest.ReleaseAll()
	nstest.RemoveBuild()
	fmt.Printf("conformance: %d passed, %d failed, %d skipped\n", tally.passed, tally.failed, tally.skipped)
	os.Exit(code)
}

// row is one line of the behaviour contract.
type row struct {
	name string
	run  func(t *testing.T)
}

var rows = []row{
	{"B01_Masquerade", testMasquerade},
	{"B02_SNATAddress", testSNATAddress},
	{"B03_RoutedMode", testRoutedMode},
	{"B04_SourcePortCollision", testSourcePortCollision},
	{"B05_ICMPErrors", testICMPErrors},
	{"B06_PublishedPorts", testPublishedPorts},
	{"B07_HostIP", testHostIP},
	{"B08_PortRange", testPortRange},
	{"B09_Hairpin", testHairpin},
	{"B10_FromNode", testFromNode},
	{"B11_LoopbackOnly", testLoopbackOnly},
	{"B12_NothingUnpublished", testNothingUnpublished},
	{"B13_RemoveMapping", testRemoveMapping},
	{"B13_RemoveMappingBusyConntrack", testRemoveMappingBusyConntrack},
	{"B14_ICCOn", testICCOn},
	{"B15_ICCOffAndLinks", testICCOffAndLinks},
	{"B16_NoBrNetfilter", testNoBrNetfilter},
	{"B17_AntiSpoofing", testAntiSpoofing},
	{"B18_NetworkIsolation", testNetworkIsolation},
	{"B19_LinkEnv", testLinkEnv},
	{"B20_AtomicChanges", testAtomicChanges},
	{"B21_Restart", testRestart},
	{"B21_ContainerGoneWhileDown", testContainerGoneWhileDown},
	{"B22_Uninstall", testUninstall},
	{"R01_ResyncRepairsDrift", testResyncRepairsDrift},
}

func TestConformance(t *testing.T) {
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			// Registered first, so it runs after every other cleanup and
			// counts failures found while tearing down too.
			t.Cleanup(func() { count(t) })
			nstest.RequireRoot(t)
			if buildErr != nil {
				first, _, _ := strings.Cut(buildErr.Error(), "\n")
				t.Fatalf("no agent to test: %s (full output at the top)", first)
			}
			r.run(t)
		})
	}
}

func count(t *testing.T) {
	tally.Lock()
	defer tally.Unlock()
	switch {
	case t.Failed():
		tally.failed++
	case t.Skipped():
		tally.skipped++
	default:
		tally.passed++
	}
}
