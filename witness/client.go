package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// maxResponseSize bounds what AddCheckpoint reads of a witness's answer. A
// cosignature line is about 150 bytes; a witness that sends more than this
// is broken or hostile.
const maxResponseSize = 64 << 10

// maxProofLines is the protocol's bound on consistency proof lines (a
// proof between two trees of at most 2^63 leaves).
const maxProofLines = 63

// Kinds of refusal, to be checked with errors.Is on an error returned by
// AddCheckpoint. Every one of them also matches ErrRefused.
var (
	// ErrRefused matches every refusal: the witness answered, understood,
	// and will not cosign this checkpoint. Retrying the same request will
	// not help.
	ErrRefused = errors.New("witness refused the checkpoint")
	// ErrUnknownLog means the witness is not configured for this log's
	// origin (404, or 403 "unknown log" from litewitness).
	ErrUnknownLog = errors.New("witness does not know this log")
	// ErrBadSignature means the witness knows the origin but none of the
	// log signatures verify with the keys it has for it (403).
	ErrBadSignature = errors.New("witness does not accept the log signature")
	// ErrInconsistent means the witness holds a checkpoint of this log that
	// the submitted one does not extend (422, or 409 at the same size): the
	// log forked, or the consistency proof is wrong.
	ErrInconsistent = errors.New("witness refused the consistency proof: the checkpoint does not extend the one it holds")
	// ErrBadRequest means the witness found the request malformed (400 or
	// another 4xx).
	ErrBadRequest = errors.New("witness found the request malformed")
)

// ErrMalformedResponse means the witness answered something the protocol
// does not allow. It is neither a refusal nor transient.
var ErrMalformedResponse = errors.New("malformed witness response")

// RefusedError is a witness's refusal to cosign a checkpoint.
type RefusedError struct {
	Status  int    // the HTTP status of the answer
	Kind    error  // ErrUnknownLog, ErrBadSignature, ErrInconsistent, ErrBadRequest or ErrRefused
	Message string // the start of the witness's explanation, as it sent it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("witness: %v (status %d: %q)", e.Kind, e.Status, e.Message)
}

// Is makes errors.Is(err, ErrRefused) and errors.Is(err, e.Kind) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused || target == e.Kind }

// ConflictError is the witness's answer when the old size of the request is
// not the size of the checkpoint it holds for the log (409). The caller
// should retry with a consistency proof from Size.
type ConflictError struct {
	Size int64 // the size of the checkpoint the witness holds
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("witness: the witness holds a checkpoint of size %d, not the old size of the request", e.Size)
}

// TransientError is a failure to get an answer from the witness: network
// error, timeout, 5xx, 408 or 429. The same request may succeed later.
type TransientError struct {
	Status int // the HTTP status, or 0 when there was no answer
	Err    error
}

func (e *TransientError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("witness: temporary failure (status %d): %v", e.Status, e.Err)
	}
	return fmt.Sprintf("witness: temporary failure: %v", e.Err)
}

func (e *TransientError) Unwrap() error { return e.Err }

// IsRefusal reports whether err is a witness's refusal to cosign (a
// RefusedError), as opposed to a conflict, a transient failure or a
// protocol error.
func IsRefusal(err error) bool { return errors.Is(err, ErrRefused) }

// IsTransient reports whether err is a TransientError.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// AddCheckpoint asks the witness at baseURL to cosign signedCheckpoint (a
// checkpoint signed by its log), given a consistency proof from oldSize, the
// size of the checkpoint the caller believes the witness holds (0 for the
// first checkpoint, with an empty proof). It implements the add-checkpoint
// call of https://c2sp.org/tlog-witness.
//
// On success it returns the witness's cosignature lines, each ending in a
// newline; appending them to signedCheckpoint gives a note that Cosigned can
// verify. The lines are checked to be well-formed note signature lines, not
// to verify: that needs the witness's key.
//
// Errors are a *ConflictError (retry from its Size), a *RefusedError
// (IsRefusal; errors.Is with ErrUnknownLog, ErrBadSignature, ErrInconsistent,
// ErrBadRequest), a *TransientError (IsTransient), ErrMalformedResponse, or a
// plain error for arguments that cannot make a valid request. hc may be nil
// for http.DefaultClient; ctx should carry a deadline.
func AddCheckpoint(ctx context.Context, hc *http.Client, baseURL string, oldSize int64, proof tlog.TreeProof, signedCheckpoint []byte) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := addCheckpointBody(oldSize, proof, signedCheckpoint)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(baseURL, "/") + "/add-checkpoint"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("witness: add-checkpoint: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &TransientError{Err: err}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, &TransientError{Status: resp.StatusCode, Err: fmt.Errorf("read answer: %w", err)}
	}
	if len(answer) > maxResponseSize && resp.StatusCode < 500 {
		return nil, fmt.Errorf("witness: add-checkpoint: answer (status %d) larger than %d bytes: %w", resp.StatusCode, maxResponseSize, ErrMalformedResponse)
	}
	return interpretAnswer(resp.StatusCode, resp.Header.Get("Content-Type"), answer, oldSize)
}

// addCheckpointBody formats an add-checkpoint request body.
func addCheckpointBody(oldSize int64, proof tlog.TreeProof, signedCheckpoint []byte) ([]byte, error) {
	switch {
	case oldSize < 0:
		return nil, fmt.Errorf("witness: add-checkpoint: negative old size %d", oldSize)
	case oldSize == 0 && len(proof) != 0:
		return nil, errors.New("witness: add-checkpoint: a proof from size 0 must be empty")
	case len(proof) > maxProofLines:
		return nil, fmt.Errorf("witness: add-checkpoint: proof of %d hashes, at most %d", len(proof), maxProofLines)
	case len(signedCheckpoint) == 0 || signedCheckpoint[len(signedCheckpoint)-1] != '\n':
		return nil, errors.New("witness: add-checkpoint: the signed checkpoint must end with a newline")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", oldSize)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(signedCheckpoint)
	return b.Bytes(), nil
}

// interpretAnswer turns a witness's answer into cosignature lines or one of
// the errors AddCheckpoint documents.
func interpretAnswer(status int, contentType string, answer []byte, oldSize int64) ([]byte, error) {
	switch {
	case status == http.StatusOK:
		if err := checkSignatureLines(answer); err != nil {
			return nil, fmt.Errorf("witness: add-checkpoint: %w: %v", ErrMalformedResponse, err)
		}
		return answer, nil
	case status == http.StatusConflict:
		size, err := parseSizeAnswer(contentType, answer)
		if err != nil {
			return nil, fmt.Errorf("witness: add-checkpoint: 409: %w: %v", ErrMalformedResponse, err)
		}
		if size == oldSize {
			// The witness is where we said, yet conflicts: the protocol
			// answers 409 when it holds a different root at that same size.
			return nil, &RefusedError{Status: status, Kind: ErrInconsistent, Message: firstLine(answer)}
		}
		return nil, &ConflictError{Size: size}
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return nil, &TransientError{Status: status, Err: errors.New(strconv.Quote(firstLine(answer)))}
	case status >= 400:
		return nil, &RefusedError{Status: status, Kind: refusalKind(status, answer), Message: firstLine(answer)}
	}
	return nil, fmt.Errorf("witness: add-checkpoint: unexpected status %d: %w", status, ErrMalformedResponse)
}

// refusalKind classifies a 4xx answer other than 409, 408 and 429.
func refusalKind(status int, answer []byte) error {
	switch status {
	case http.StatusNotFound:
		return ErrUnknownLog
	case http.StatusForbidden:
		// The protocol says 404 for an unknown origin, but litewitness
		// (torchwood v0.6.1) answers 403 "unknown log".
		if strings.TrimSpace(string(answer)) == "unknown log" {
			return ErrUnknownLog
		}
		return ErrBadSignature
	case http.StatusUnprocessableEntity:
		return ErrInconsistent
	case http.StatusBadRequest:
		return ErrBadRequest
	}
	return ErrRefused
}

// parseSizeAnswer parses the text/x.tlog.size body of a 409 answer.
func parseSizeAnswer(contentType string, answer []byte) (int64, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "text/x.tlog.size" {
		return 0, fmt.Errorf("content type %q, want text/x.tlog.size", contentType)
	}
	s, ok := strings.CutSuffix(string(answer), "\n")
	n, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("size %q is not a decimal followed by a newline", firstLine(answer))
	}
	return n, nil
}

// checkSignatureLines checks that b is one or more note signature lines:
// "— <name> <base64 of key hash and signature>\n".
func checkSignatureLines(b []byte) error {
	if len(b) == 0 {
		return errors.New("no cosignature line")
	}
	if b[len(b)-1] != '\n' {
		return errors.New("the last line does not end with a newline")
	}
	for i, line := range strings.Split(string(b[:len(b)-1]), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		name, b64, ok2 := strings.Cut(rest, " ")
		sig, err := base64.StdEncoding.DecodeString(b64)
		if !ok || !ok2 || !isValidName(name) || err != nil || len(sig) < 5 {
			return fmt.Errorf("line %d %q is not a signature line", i+1, truncate(line))
		}
	}
	return nil
}

// firstLine returns the first line of a witness's answer, shortened, for
// error messages.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return truncate(s)
}

func truncate(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
