package auth

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// idpMetrics measure the identity providers from this side: how long
// their answers take (discovery, keys, token, userinfo) and how often
// they fail (no answer, or a 4xx/5xx status).
type idpMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newIDPMetrics() *idpMetrics {
	return &idpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aidants_idp_request_duration_seconds",
			Help:    "Time of the requests to the identity providers (discovery, keys, token, userinfo), by provider.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"provider"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aidants_idp_errors_total",
			Help: "Requests to the identity providers that failed, by provider and kind (network, http_4xx, http_5xx)."},
			[]string{"provider", "kind"}),
	}
}

// Register adds the identity providers' metrics to reg.
func (s *Service) Register(reg prometheus.Registerer) {
	reg.MustRegister(s.idp.duration, s.idp.errors)
}

// instrument returns a copy of c whose requests are measured for provider.
func (m *idpMetrics) instrument(c *http.Client, provider Provider) *http.Client {
	out := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = measured{base: base, provider: string(provider), m: m}
	return &out
}

type measured struct {
	base     http.RoundTripper
	provider string
	m        *idpMetrics
}

func (t measured) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	t.m.duration.WithLabelValues(t.provider).Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		t.m.errors.WithLabelValues(t.provider, "network").Inc()
	case resp.StatusCode >= 500:
		t.m.errors.WithLabelValues(t.provider, "http_5xx").Inc()
	case resp.StatusCode >= 400:
		t.m.errors.WithLabelValues(t.provider, "http_4xx").Inc()
	}
	return resp, err
}
