package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"aidants/audit"
)

// Limits bounds what one client may ask per Window (0: no limit).
type Limits struct {
	Window                                                  time.Duration
	SignIn, ConsentLinks, TokenFailures, Verify, AuditorAPI int
}

// limiter is one limit: a token bucket per key (a client address, a
// client_id), refilled at n per window. Buckets idle for two windows are
// forgotten, so that the map stays small whatever the traffic.
type limiter struct {
	name      string
	perWindow int
	window    time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket

	throttled atomic.Int64 // refusals since the journal was last told
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxBuckets bounds a limiter's memory: past it, the idlest half goes.
const maxBuckets = 100_000

func newLimiter(name string, perWindow int, window time.Duration) *limiter {
	if perWindow <= 0 {
		return nil
	}
	return &limiter{name: name, perWindow: perWindow, window: window, buckets: map[string]*bucket{}}
}

func (l *limiter) bucket(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.sweepLocked(now, l.window/2)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perWindow)/l.window.Seconds()), l.perWindow)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim
}

func (l *limiter) sweepLocked(now time.Time, idle time.Duration) {
	for k, b := range l.buckets {
		if now.Sub(b.seen) > idle {
			delete(l.buckets, k)
		}
	}
}

// allow takes one request from key's bucket, or says how long to wait.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := time.Now()
	r := l.bucket(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		l.throttled.Add(1)
		return false, d
	}
	return true, 0
}

// exhausted tells, without taking anything, whether key has no request
// left (for limits that count failures, taken after the answer).
func (l *limiter) exhausted(key string) (bool, time.Duration) {
	lim := l.bucket(key, time.Now())
	if lim.Tokens() >= 1 {
		return false, 0
	}
	l.throttled.Add(1)
	wait := time.Duration((1 - lim.Tokens()) / float64(lim.Limit()) * float64(time.Second))
	return true, max(wait, time.Second)
}

// spend takes one request from key's bucket, whatever is left.
func (l *limiter) spend(key string) {
	l.bucket(key, time.Now()).AllowN(time.Now(), 1)
}

// limits are the service's limits.
type limits struct {
	signIn, consent, tokenFailures, verify, auditor *limiter
	all                                             []*limiter
}

func newLimits(c Limits) *limits {
	if c.Window <= 0 {
		c.Window = time.Minute
	}
	l := &limits{
		signIn:        newLimiter("sign_in", c.SignIn, c.Window),
		consent:       newLimiter("consent_links", c.ConsentLinks, c.Window),
		tokenFailures: newLimiter("token_failures", c.TokenFailures, c.Window),
		verify:        newLimiter("verify", c.Verify, c.Window),
		auditor:       newLimiter("auditor_api", c.AuditorAPI, c.Window),
	}
	for _, x := range []*limiter{l.signIn, l.consent, l.tokenFailures, l.verify, l.auditor} {
		if x != nil {
			l.all = append(l.all, x)
		}
	}
	return l
}

// tooMany answers 429 with Retry-After, as a page or as JSON.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, wait time.Duration, api bool) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
	s.logger.Warn("request throttled", "request_id", requestID(r.Context()), "client", clientFrom(r.Context()).addr, "path", r.URL.Path)
	if api {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable", "error_description": "too many requests from this client: try again later"})
		return
	}
	s.renderError(w, r, http.StatusTooManyRequests, msgTooMany)
}

var msgTooMany = message{"Trop de demandes", "Trop de demandes sont venues de votre connexion en peu de temps. Attendez une minute, puis réessayez."}

// limited applies l per client address to next (nil l: no limit).
func (s *Server) limited(l *limiter, api bool, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := l.allow(clientFrom(r.Context()).addr); !ok {
			s.tooMany(w, r, wait, api)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenLimited counts the failed requests to the token endpoint per
// client address and per client_id: once either has none left, the
// endpoint answers 429 without looking further.
func (s *Server) tokenLimited(next http.Handler) http.Handler {
	l := s.limits.tokenFailures
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := "addr:" + clientFrom(r.Context()).addr
		client := "client:" + tokenClientID(r)
		for _, k := range []string{addr, client} {
			if k == "client:" {
				continue
			}
			if out, wait := l.exhausted(k); out {
				s.tooMany(w, r, wait, true)
				return
			}
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == http.StatusBadRequest || sw.status == http.StatusUnauthorized {
			l.spend(addr)
			if client != "client:" {
				l.spend(client)
			}
		}
	})
}

// tokenClientID reads the client_id a token request names (form, Basic
// header or assertion's form field), leaving the body for the handler.
func tokenClientID(r *http.Request) string {
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			return u
		}
		return id
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	// The rest stays for the handler, whose reader enforces the bound.
	r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	if err != nil {
		return ""
	}
	form, _ := url.ParseQuery(string(body))
	return form.Get("client_id")
}

type readCloser struct {
	io.Reader
	io.Closer
}

// journalThrottling writes, once per window, one abuse.throttled event per
// limit that refused requests in it, with their count: never one per
// address or per request, so that anonymous traffic cannot flood the
// journal.
func (s *Server) journalThrottling(ctx context.Context, window time.Duration) {
	t := time.NewTicker(window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, l := range s.limits.all {
			n := l.throttled.Swap(0)
			if n == 0 {
				continue
			}
			err := s.log.Write(ctx, func(tx *audit.Tx) error {
				_, err := tx.Append(audit.Event{Type: audit.AbuseThrottled, Actor: audit.Actor{Kind: audit.ActorSystem, ID: "limits"},
					Detail: map[string]any{"limit": l.name, "refused": n, "window_seconds": int64(window.Seconds()), "per_window": l.perWindow}})
				return err
			})
			if err != nil {
				s.logger.Warn("throttling could not be journaled", "limit", l.name, "refused", n, "err", err.Error())
			}
		}
		now := time.Now()
		for _, l := range s.limits.all {
			l.mu.Lock()
			l.sweepLocked(now, 2*window)
			l.mu.Unlock()
		}
	}
}
