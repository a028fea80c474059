package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrBadRange is returned for proof parameters that do not describe a tree
// the log has signed (negative, index ≥ size, size beyond the latest
// checkpoint). Its message is meant for the requester.
type ErrBadRange struct{ Msg string }

func (e *ErrBadRange) Error() string { return e.Msg }

// InclusionProof is the proof that leaf Index is in the tree of size Size.
// Its JSON form is the stable format of SPEC §6.
type InclusionProof struct {
	Index    int64       `json:"index"`
	Size     int64       `json:"size"`
	LeafHash tlog.Hash   `json:"leaf_hash"`
	Hashes   []tlog.Hash `json:"hashes"`
}

// ConsistencyProof is the proof that the tree of size Old is a prefix of
// the tree of size Size.
type ConsistencyProof struct {
	Old    int64       `json:"old"`
	Size   int64       `json:"size"`
	Hashes []tlog.Hash `json:"hashes"`
}

// Inclusion proves that leaf index of the current origin's tree is in its
// tree of the given size, which must not exceed the latest signed
// checkpoint.
func (l *Log) Inclusion(ctx context.Context, index, size int64) (*InclusionProof, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	if index < 0 || index >= size {
		return nil, &ErrBadRange{Msg: fmt.Sprintf("index must be between 0 and size-1 (%d)", size-1)}
	}
	return l.inclusionIn(l.cur, index, size)
}

// inclusionIn proves leaf index of origin o's tree in its tree of the
// given size, which the caller knows was signed.
func (l *Log) inclusionIn(o *Origin, index, size int64) (*InclusionProof, error) {
	pr := l.proofs
	pr.base = o.HashBase
	// The leaf hash rides along with the proof's hashes: one query.
	r := &withLeaf{proofReader: pr, leaf: tlog.StoredHashIndex(0, index)}
	p, err := tlog.ProveRecord(size, index, r)
	if err != nil {
		return nil, fmt.Errorf("audit: prove record %d in %d: %w", index, size, err)
	}
	if !r.got { // a proof with no hashes to read (a tree of one)
		if _, err := r.ReadHashes(nil); err != nil {
			return nil, fmt.Errorf("audit: leaf hash %d: %w", index, err)
		}
	}
	if p == nil {
		p = tlog.RecordProof{}
	}
	return &InclusionProof{Index: index, Size: size, LeafHash: r.leafHash, Hashes: p}, nil
}

// Consistency proves that the tree of size old is a prefix of the tree of
// size size.
func (l *Log) Consistency(ctx context.Context, old, size int64) (*ConsistencyProof, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	if old < 1 || old > size {
		return nil, &ErrBadRange{Msg: fmt.Sprintf("old must be between 1 and size (%d)", size)}
	}
	p, err := tlog.ProveTree(size, old, l.proofs)
	if err != nil {
		return nil, fmt.Errorf("audit: prove tree %d in %d: %w", old, size, err)
	}
	if p == nil {
		p = tlog.TreeProof{}
	}
	return &ConsistencyProof{Old: old, Size: size, Hashes: p}, nil
}

// withLeaf reads stored hashes for a proof, and the leaf's hash in the
// same query.
type withLeaf struct {
	proofReader
	leaf     int64
	leafHash tlog.Hash
	got      bool
}

func (r *withLeaf) ReadHashes(ids []int64) ([]tlog.Hash, error) {
	all := append(ids[:len(ids):len(ids)], r.leaf)
	hs, err := r.proofReader.ReadHashes(all)
	if err != nil {
		return nil, err
	}
	r.leafHash, r.got = hs[len(hs)-1], true
	return hs[:len(ids)], nil
}

func (l *Log) checkSize(ctx context.Context, size int64) error {
	if size < 1 {
		return &ErrBadRange{Msg: "size must be at least 1"}
	}
	cp, err := l.Latest(ctx)
	if errors.Is(err, ErrEmpty) {
		return &ErrBadRange{Msg: "the log is empty"}
	}
	if err != nil {
		return err
	}
	if size > cp.Size {
		return &ErrBadRange{Msg: fmt.Sprintf("size is beyond the latest checkpoint (%d)", cp.Size)}
	}
	return nil
}
