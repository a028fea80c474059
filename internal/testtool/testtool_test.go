package testtool_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"aidants/internal/testtool"
)

func TestProcessKeepsItsOutputAndStops(t *testing.T) {
	p, err := testtool.Start("sh", "-c", "echo prêt; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Output(), "prêt") {
		if time.Now().After(deadline) {
			t.Fatalf("output %q", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	if p.Err() == nil || time.Since(start) > testtool.StopTimeout {
		t.Fatalf("stopped in %v with %v, want an interrupted process at once", time.Since(start), p.Err())
	}
	p.Stop() // a second Stop is harmless
}

func TestFreePortIsFreeAndBinDirIsTheToolsOwn(t *testing.T) {
	port, err := testtool.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	l.Close()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skip("no user cache directory")
	}
	dir, err := testtool.GoTool{Dir: "tool-v1"}.BinDir()
	if err != nil || dir != filepath.Join(cache, "aidants-test", "tool-v1", "bin") {
		t.Fatalf("BinDir = %q, %v", dir, err)
	}
}
