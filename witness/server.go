package witness

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxRequestSize bounds an add-checkpoint request, as litewitness does: 63
// proof lines and a checkpoint with a few signatures fit well within it.
const maxRequestSize = 10 << 10

// DevWitnessName is the name of the development witness of the service's
// development mode. The .localhost name says it is no public witness.
const DevWitnessName = "dev.aidants.localhost/witness"

// ServerOptions configures a development witness.
type ServerOptions struct {
	// Name is the witness name that appears in its cosignature lines, a
	// URL-like name such as DevWitnessName.
	Name string
	// Key is the witness's Ed25519 private key (see LoadOrCreateKey).
	Key crypto.Signer
	// Logs maps each log origin the witness cosigns for to the note
	// verifier key of that log.
	Logs map[string]string
	// StatePath is the JSON file where the witness keeps the checkpoint it
	// holds for each log. It is created if missing. A log taken out of Logs
	// keeps its entry, so that adding it back cannot make the witness
	// cosign a fork of what it cosigned before.
	StatePath string
	// Logger receives a line per refused or failed request; nil discards.
	Logger *slog.Logger
}

// Server is a development witness: it implements the add-checkpoint call of
// https://c2sp.org/tlog-witness with the same checks as litewitness, keeps
// its state in a JSON file, and serves at "/" a text page with its name and
// verifier key. It is meant for development mode and tests, where running
// litewitness and an ssh-agent would be a burden; a production log should
// ask independent witnesses.
//
// Where litewitness (torchwood v0.6.1) and the protocol differ, Server
// follows the protocol: an unknown origin is 404 (litewitness: 403), a
// checkpoint at the held size with another root is 409 (litewitness: 422), a
// proof sent with old size 0 or a malformed checkpoint is 400 (litewitness
// accepts the first, answers 500 to the second). The client, AddCheckpoint,
// classifies both witnesses' answers alike.
type Server struct {
	name   string
	signer *torchwood.CosignatureSigner
	logs   map[string]note.Verifier
	path   string
	log    *slog.Logger
	mux    *http.ServeMux

	// mu serialises add-checkpoint requests, so that checking the old size
	// and persisting the new checkpoint are one atomic step (the protocol's
	// rollback race).
	mu    sync.Mutex
	state serverState
}

// serverState is the JSON content of the state file.
type serverState struct {
	Logs map[string]logState `json:"logs"`
}

// logState is the checkpoint a witness holds for one log.
type logState struct {
	Size int64     `json:"size"`
	Root tlog.Hash `json:"root"`
}

// NewServer returns a development witness, loading its state from
// opts.StatePath if the file exists.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Key == nil {
		return nil, errors.New("witness: new server: no key")
	}
	signer, err := torchwood.NewCosignatureSigner(opts.Name, opts.Key)
	if err != nil {
		return nil, fmt.Errorf("witness: new server %q: %w", opts.Name, err)
	}
	if opts.StatePath == "" {
		return nil, errors.New("witness: new server: no state path")
	}
	s := &Server{
		name:   opts.Name,
		signer: signer,
		logs:   make(map[string]note.Verifier, len(opts.Logs)),
		path:   opts.StatePath,
		log:    opts.Logger,
		mux:    http.NewServeMux(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for origin, vkey := range opts.Logs {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, fmt.Errorf("witness: new server: key of log %q: %w", origin, err)
		}
		s.logs[origin] = v
	}
	if s.state, err = loadState(opts.StatePath); err != nil {
		return nil, err
	}
	s.mux.HandleFunc("POST /add-checkpoint", s.serveAddCheckpoint)
	s.mux.HandleFunc("GET /{$}", s.serveIndex)
	return s, nil
}

// VerifierKey returns the witness's cosignature/v1 verifier key.
func (s *Server) VerifierKey() string { return s.signer.Verifier().String() }

// ServeHTTP serves POST /add-checkpoint and GET /.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// addError is a refusal with its HTTP status; a conflict also carries the
// size the witness holds.
type addError struct {
	status int
	msg    string
	size   int64
}

func (e *addError) Error() string { return e.msg }

func (s *Server) serveAddCheckpoint(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestSize))
	if err != nil {
		http.Error(w, "request too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	cosig, err := s.addCheckpoint(body)
	var ae *addError
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(cosig)
	case errors.As(err, &ae) && ae.status == http.StatusConflict:
		s.log.Info("witness: add-checkpoint refused", "status", ae.status, "reason", ae.msg, "size", ae.size)
		w.Header().Set("Content-Type", "text/x.tlog.size")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "%d\n", ae.size)
	case errors.As(err, &ae):
		s.log.Info("witness: add-checkpoint refused", "status", ae.status, "reason", ae.msg)
		http.Error(w, ae.msg, ae.status)
	default:
		s.log.Error("witness: add-checkpoint", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// addCheckpoint checks an add-checkpoint request body, records the new
// checkpoint and returns the cosignature line.
func (s *Server) addCheckpoint(body []byte) ([]byte, error) {
	header, signed, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return nil, &addError{status: http.StatusBadRequest, msg: "malformed request"}
	}
	lines := strings.Split(string(header), "\n")
	sizeText, ok := strings.CutPrefix(lines[0], "old ")
	oldSize, err := strconv.ParseInt(sizeText, 10, 64)
	if !ok || err != nil || oldSize < 0 || strconv.FormatInt(oldSize, 10) != sizeText {
		return nil, &addError{status: http.StatusBadRequest, msg: "malformed old size"}
	}
	proof := make(tlog.TreeProof, len(lines)-1)
	for i, l := range lines[1:] {
		if proof[i], err = tlog.ParseHash(l); err != nil {
			return nil, &addError{status: http.StatusBadRequest, msg: "malformed consistency proof"}
		}
	}
	if len(proof) > maxProofLines || oldSize == 0 && len(proof) > 0 {
		return nil, &addError{status: http.StatusBadRequest, msg: "malformed consistency proof"}
	}

	origin, _, _ := bytes.Cut(signed, []byte("\n"))
	verifier, ok := s.logs[string(origin)]
	if !ok {
		return nil, &addError{status: http.StatusNotFound, msg: "unknown log"}
	}
	n, err := note.Open(signed, note.VerifierList(verifier))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified), errors.As(err, &invalid):
		return nil, &addError{status: http.StatusForbidden, msg: "invalid signature"}
	case err != nil:
		return nil, &addError{status: http.StatusBadRequest, msg: "malformed checkpoint"}
	}
	c, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || c.String() != n.Text {
		return nil, &addError{status: http.StatusBadRequest, msg: "malformed checkpoint"}
	}
	if oldSize > c.N {
		return nil, &addError{status: http.StatusBadRequest, msg: "old size larger than checkpoint size"}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.state.Logs[c.Origin] // the zero value before the first checkpoint
	if held.Size != oldSize {
		return nil, &addError{status: http.StatusConflict, msg: "old size is not the size held", size: held.Size}
	}
	switch {
	case oldSize == c.N && held.Size > 0 && held.Root != c.Hash:
		return nil, &addError{status: http.StatusConflict, msg: "another root at the size held", size: held.Size}
	case oldSize > 0 && tlog.CheckTree(proof, c.N, c.Hash, oldSize, held.Root) != nil:
		return nil, &addError{status: http.StatusUnprocessableEntity, msg: "bad consistency proof"}
	}
	next := cloneState(s.state)
	next.Logs[c.Origin] = logState{Size: c.N, Root: c.Hash}
	if err := saveState(s.path, next); err != nil {
		return nil, err
	}
	s.state = next

	cosigned, err := note.Sign(&note.Note{Text: n.Text}, s.signer)
	if err != nil {
		return nil, fmt.Errorf("witness: cosign: %w", err)
	}
	return cosigned[len(n.Text)+1:], nil
}

// emptyTreeHash is the RFC 6962 root of the empty tree, SHA-256 of nothing.
var emptyTreeHash = tlog.Hash(sha256.Sum256(nil))

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	st := cloneState(s.state)
	s.mu.Unlock()
	origins := make([]string, 0, len(s.logs))
	for o := range s.logs {
		origins = append(origins, o)
	}
	sort.Strings(origins)

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "development witness %s (c2sp.org/tlog-witness)\n\n%s\n\nlogs:\n", s.name, s.VerifierKey())
	for _, o := range origins {
		l := st.Logs[o]
		if l.Size == 0 {
			l.Root = emptyTreeHash
		}
		fmt.Fprintf(w, "- %s size %d root %s\n", o, l.Size, base64.StdEncoding.EncodeToString(l.Root[:]))
	}
}

func cloneState(st serverState) serverState {
	c := serverState{Logs: make(map[string]logState, len(st.Logs)+1)}
	for k, v := range st.Logs {
		c.Logs[k] = v
	}
	return c
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (serverState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return serverState{Logs: map[string]logState{}}, nil
	}
	if err != nil {
		return serverState{}, fmt.Errorf("witness: load state: %w", err)
	}
	var st serverState
	if err := json.Unmarshal(b, &st); err != nil {
		return serverState{}, fmt.Errorf("witness: load state %s: %w", path, err)
	}
	if st.Logs == nil {
		st.Logs = map[string]logState{}
	}
	for origin, l := range st.Logs {
		if l.Size < 0 {
			return serverState{}, fmt.Errorf("witness: load state %s: log %q has size %d", path, origin, l.Size)
		}
	}
	return st, nil
}

// saveState replaces the state file atomically: a crash leaves either the
// old state or the new one, never a mix, and the rename is durable before
// the witness cosigns (forgetting a cosigned checkpoint would let it sign a
// fork after a restart).
func saveState(path string, st serverState) error {
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return fmt.Errorf("witness: save state: %w", err)
	}
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("witness: save state: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file next to path, syncs it,
// renames it over path and syncs the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadOrCreateKey returns the witness Ed25519 key kept at path, creating it
// (readable by its owner only) if the file does not exist. The file holds
// the base64 32-byte seed. A key file readable by others is refused: anyone
// who reads it can cosign in the witness's name.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("witness: create key: %w", err)
	}
	// Write aside then link into place, so that two processes creating
	// the key at once end up sharing one, and a crash leaves no half key.
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := writeFileAtomic(tmp, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("witness: create key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("witness: create key: %w", err)
	}
	return loadKey(path)
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("witness: load key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("witness: load key %s: mode %v lets others read it, want 0600", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("witness: load key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("witness: load key %s: not a base64 %d-byte seed", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
