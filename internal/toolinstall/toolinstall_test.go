package toolinstall

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInstalledBinariesAreUsedAsTheyAre(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	tool := Tool{Name: "present-v1", Packages: []string{"example.invalid/present@v1"}, Binaries: []string{"a", "b"}}
	dir, err := tool.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(dir, filepath.Join("aidants-test", "present-v1", "bin")) {
		t.Errorf("Dir = %s", dir)
	}
	os.MkdirAll(dir, 0o755)
	for _, b := range tool.Binaries {
		os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755)
	}
	paths, err := tool.Install(t.Logf, time.Minute)
	if err != nil || len(paths) != 2 || paths[1] != filepath.Join(dir, "b") {
		t.Fatalf("Install = %v, %v", paths, err)
	}
}

func TestFailedInstallIsReportedAndNotRetried(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOFLAGS", "-mod=mod")
	tool := Tool{Name: "absent-v1", Packages: []string{"example.invalid/absent@v1.0.0"}, Binaries: []string{"absent"}}
	_, err := tool.Install(t.Logf, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "go install example.invalid/absent@v1.0.0") {
		t.Fatalf("err = %v, want the go install failure", err)
	}
	// Once tried, the answer is remembered: a binary appearing now is not
	// looked at, and go is not run again.
	dir, _ := tool.Dir()
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "absent"), []byte("#!/bin/sh\n"), 0o755)
	if _, again := tool.Install(t.Logf, time.Minute); again == nil || again.Error() != err.Error() {
		t.Errorf("second Install: %v, want the same failure", again)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 2 { // bin and install.lock; the private directory is gone
		t.Errorf("left behind: %v", entries)
	}
}
