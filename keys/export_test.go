package keys

import (
	"context"
	"time"

	"aidants/audit"
)

// OpenWith is Open with the clock and the refresh interval of the cache
// set by the test.
func OpenWith(ctx context.Context, log *audit.Log, secret []byte, now func() time.Time, refresh time.Duration) (*Manager, error) {
	return open(ctx, log, secret, options{now: now, refresh: refresh})
}
