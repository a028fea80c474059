package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// statusWriter remembers the status for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// common gives every request an id, a log line and metrics, and turns a
// panic into a 500. The log names the path, never the query string: codes,
// states and tokens travel there.
func (s *Server) common(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		if !s.opts.Dev {
			w.Header().Set("Strict-Transport-Security", "max-age=63072000")
		}
		client, proxied := s.clientAddr(r)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, clientKey, clientInfo{addr: client, proxied: proxied})
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error("panic", "request_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if sw.status == 0 {
					s.renderError(sw, r, http.StatusInternalServerError, msgInternal)
				}
			}
			d := time.Since(start)
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			s.metrics.observe(route, sw.status, d)
			level := s.logger.Info
			if sw.status >= 500 {
				level = s.logger.Error
			}
			level("request", "request_id", id, "client", client, "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"duration_ms", d.Milliseconds(), "bytes", sw.bytes)
		}()
		next.ServeHTTP(sw, r)
	})
}

// browserMiddleware protects pages: security headers, refusal of
// cross-site state-changing requests (Sec-Fetch-Site / Origin), a bound on
// request bodies, and the aidant's principal in the context.
func (s *Server) browserMiddleware(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.logger.Warn("cross-origin request refused", "request_id", requestID(r.Context()), "path", r.URL.Path)
		s.renderError(w, r, http.StatusForbidden, msgCrossSite)
	}))
	inner := cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", s.csp)
		securityHeaders(h)
		// Nothing a person sees or downloads is kept by a shared
		// computer's cache (a France Services counter); the stylesheet
		// says otherwise for itself.
		h.Set("Cache-Control", "no-store")
		inner.ServeHTTP(w, r)
	})
}

// securityHeaders are set on every page, the development ones included.
func securityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// clientInfo is who sent a request: the peer, or the client a trusted
// proxy names.
type clientInfo struct {
	addr    string
	proxied bool
}

// clientAddr is the request's client: the peer's address, or, when the
// peer is a trusted proxy, the right-most address of X-Forwarded-For that
// is not a trusted proxy itself. proxied tells whether a proxy carried
// the request (or said so: X-Forwarded-For or Forwarded is present).
func (s *Server) clientAddr(r *http.Request) (string, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	forwarded := r.Header.Values("X-Forwarded-For")
	proxied := len(forwarded) > 0 || r.Header.Get("Forwarded") != ""
	if !s.trusted(host) {
		return host, proxied
	}
	var hops []string
	for _, v := range forwarded {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				hops = append(hops, a)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if ip := net.ParseIP(hops[i]); ip != nil && !s.trusted(hops[i]) {
			return ip.String(), true
		}
	}
	return host, proxied
}

func (s *Server) trusted(addr string) bool {
	ip := net.ParseIP(addr)
	if ip == nil {
		return false
	}
	for _, n := range s.opts.TrustedProxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// clientFrom returns what common found of the request's client.
func clientFrom(ctx context.Context) clientInfo {
	c, _ := ctx.Value(clientKey).(clientInfo)
	return c
}

// apiMiddleware serves machine interfaces: no cookies read, no caching of
// answers unless a handler says so, and public read-only endpoints open to
// other origins (proofs are meant to be fetched by anyone).
func (s *Server) apiMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Access-Control-Allow-Origin", "*")
		// Machine requests are small: a token request, a userinfo call.
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}
