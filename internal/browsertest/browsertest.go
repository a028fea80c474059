// Package browsertest starts a real headless Chromium for page journeys
// (chromedp). A test that needs a browser calls New; when Chromium is not
// installed the test is skipped loudly, or fails under
// AIDANTS_TEST_REQUIRE_ALL=1 (CI).
package browsertest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"aidants/store/storetest"
)

// Path finds the Chromium binary, or "".
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts a headless Chromium with a fresh profile and returns a
// context for its first tab, ended with the test. Every action is bounded
// by timeout.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path := Path()
	if path == "" {
		storetest.SkipOrFail(t, "Chromium is not installed (apt-get install chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "fr-FR"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Incognito returns a tab in a new browser context of the same browser:
// its own cookies, as a second person on another device.
func Incognito(t testing.TB, parent context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}

// Cookies returns the tab's cookies for url.
func Cookies(ctx context.Context, url string) ([]*network.Cookie, error) {
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	return res.Cookies, err
}

// SetCookies puts cookies back into the tab, for url.
func SetCookies(ctx context.Context, url string, cookies []*network.Cookie) error {
	var params []*network.CookieParam
	for _, c := range cookies {
		params = append(params, &network.CookieParam{Name: c.Name, Value: c.Value, URL: url, Path: c.Path,
			Secure: c.Secure, HTTPOnly: c.HTTPOnly, SameSite: c.SameSite})
	}
	_, err := chromedp.Call(ctx, network.SetCookies, network.SetCookiesParams{Cookies: params})
	return err
}

// Text returns the visible text of the page's body.
func Text(ctx context.Context) (string, error) {
	return chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
}

// WaitURL waits until the tab's location contains part.
func WaitURL(ctx context.Context, part string) (string, error) {
	for {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			return loc, err
		}
		if strings.Contains(loc, part) {
			return loc, nil
		}
		select {
		case <-ctx.Done():
			return loc, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
