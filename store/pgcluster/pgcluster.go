// Package pgcluster starts a throwaway PostgreSQL cluster from the system
// binaries (initdb, postgres), for tests and benchmarks. When the process
// runs as root, the cluster runs as the user nobody (initdb refuses root).
// It listens on a unix socket in its own temporary directory only, and dies
// with the process that started it.
package pgcluster

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// Available tells whether the binaries are on PATH.
func Available() bool {
	_, err := exec.LookPath("initdb")
	return err == nil
}

// Options tunes the cluster.
type Options struct {
	// Durable keeps fsync and synchronous commits on (benchmarks); tests
	// turn them off for speed.
	Durable bool
}

// Cluster is a running PostgreSQL.
type Cluster struct {
	dir  string // owned by the cluster's user
	cmd  *exec.Cmd
	done chan error
}

// DSN is the connection string of database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=aidants dbname=%s sslmode=disable", c.dir, db)
}

// Start runs initdb and postgres as an unprivileged user when the
// tests run as root (initdb refuses root), listening on a unix socket only.
func Start(opts Options) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "aidants-pg-")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("tests run as root and there is no user nobody: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command("initdb", "-D", data, "-U", "aidants", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C"}
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	c := &Cluster{dir: dir, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig is tied to the thread that started the child: keep
		// this goroutine on its thread until postgres exits, so that a
		// test binary killed without cleanup takes postgres with it.
		runtime.LockOSThread()
		args := []string{"-D", data, "-k", dir, "-c", "listen_addresses=", "-c", "max_connections=400", "-c", "shared_buffers=128MB"}
		if !opts.Durable {
			args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
		}
		cmd := exec.Command("postgres", args...)
		cmd.Dir = dir
		cmd.Env = initdb.Env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
		logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
		if cred != nil && logf != nil {
			os.Chown(logf.Name(), int(cred.Uid), int(cred.Gid))
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		c.cmd = cmd
		started <- nil
		c.done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", c.DSN("postgres"))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return c, nil
		}
		select {
		case werr := <-c.done:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %v: %s", werr, log)
		default:
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("postgres did not accept connections: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the cluster down and removes its files.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	os.RemoveAll(c.dir)
}

// CreateDatabase creates an empty database and returns its DSN.
func (c *Cluster) CreateDatabase(name string) (string, error) {
	admin, err := sql.Open("pgx", c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// CopyDatabase creates dst as a copy of src (CREATE DATABASE … TEMPLATE),
// as a restored backup would be; nobody may be connected to src. It
// returns dst's DSN.
func (c *Cluster) CopyDatabase(src, dst string) (string, error) {
	admin, err := sql.Open("pgx", c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE ` + dst + ` TEMPLATE ` + src); err != nil {
		return "", fmt.Errorf("copy database %s to %s: %w", src, dst, err)
	}
	return c.DSN(dst), nil
}
