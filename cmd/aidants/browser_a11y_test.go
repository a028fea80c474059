package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/audit"
	"aidants/devidp"
	"aidants/internal/browsertest"
)

// axeCore installs axe-core (pinned by testdata/a11y/package-lock.json)
// with npm into a folder of its own under the user's cache, once per lock
// file, and returns the text of axe.min.js. Without node or npm the test
// is skipped loudly, and fails in CI (AIDANTS_TEST_REQUIRE_ALL=1).
func axeCore(t *testing.T) string {
	t.Helper()
	dir := npmCI(t, "a11y", filepath.Join("axe-core", "axe.min.js"), "the accessibility tour needs axe-core from npm")
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "axe v4.14.1") {
		t.Fatalf("%s is not axe-core 4.14.1", dir)
	}
	return string(b)
}

// finding is one thing wrong on one page of the tour.
type finding struct {
	page  string
	width int64 // 0: both widths, or the page as a whole
	check string
	what  string
}

func (f finding) String() string {
	w := "all widths"
	if f.width > 0 {
		w = fmt.Sprintf("%d px", f.width)
	}
	return fmt.Sprintf("%s @ %s — %s: %s", f.page, w, f.check, f.what)
}

// pageText is what a page shows, at one width.
type pageText struct {
	stop  tourStop
	width int64
	text  string
}

// tourChecks collects, page after page, what the tour found, so that
// one run lists everything to fix.
type tourChecks struct {
	t      *testing.T
	axe    string
	a11y   []finding
	titles map[string][]string // title → pages
	texts  []pageText
	pages  []string
}

// visit checks the page in ctx at each width: axe-core, sideways
// scrolling, the title, the skip link and the visible focus; and keeps
// its visible text for the wording checks.
func (c *tourChecks) visit(ctx context.Context, stop tourStop) {
	t := c.t
	t.Helper()
	c.pages = append(c.pages, stop.Name)
	add := func(width int64, check, what string) {
		c.a11y = append(c.a11y, finding{page: stop.Name, width: width, check: check, what: what})
	}
	title, err := browsertest.Title(ctx)
	if err != nil {
		t.Fatalf("%s: %v", stop.Name, err)
	}
	if title == "" || strings.Trim(strings.TrimSuffix(title, "Aidants"), " —-|:") == "" {
		add(0, "title", fmt.Sprintf("the title %q says nothing of the page", title))
	}
	c.titles[title] = append(c.titles[title], stop.Name)
	for _, w := range tourWidths {
		if err := browsertest.SetWidth(ctx, w); err != nil {
			t.Fatalf("%s: width %d: %v", stop.Name, w, err)
		}
		o, err := browsertest.HorizontalOverflow(ctx)
		if err != nil {
			t.Fatalf("%s: %v", stop.Name, err)
		}
		if o.Scrolls() {
			add(w, "horizontal-scroll", fmt.Sprintf("the page is %d px wide in a %d px viewport", o.ScrollWidth, o.ClientWidth))
		}
		vs, err := browsertest.Axe(ctx, c.axe)
		if err != nil {
			t.Fatalf("%s: %v", stop.Name, err)
		}
		for _, v := range vs {
			add(w, "axe "+v.ID, fmt.Sprintf("[%s] %s — %s", v.Impact, v.Help, strings.Join(v.Targets, ", ")))
		}
		problems, err := browsertest.KeyboardStartProblems(ctx)
		if err != nil {
			t.Fatalf("%s: %v", stop.Name, err)
		}
		for _, p := range problems {
			check, what, _ := strings.Cut(p, ": ")
			add(w, check, what)
		}
		small, err := browsertest.SmallTargets(ctx, 44)
		if err != nil {
			t.Fatalf("%s: %v", stop.Name, err)
		}
		if !stop.Foreign {
			for _, s := range small {
				add(w, "target-44px", s)
			}
		}
		text, err := browsertest.VisibleText(ctx)
		if err != nil {
			t.Fatalf("%s: %v", stop.Name, err)
		}
		c.texts = append(c.texts, pageText{stop: stop, width: w, text: text})
	}
}

// report fails t with every finding, sorted by page, or passes.
func report(t *testing.T, what string, fs []finding) {
	t.Helper()
	if len(fs) == 0 {
		return
	}
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = f.String()
	}
	lines = slices.Compact(lines)
	t.Errorf("%s: %d problems:\n%s", what, len(lines), strings.Join(lines, "\n"))
}

// TestPageTour visits every page of the journeys, in development mode and
// in a production-mode instance, at 320 and 1280 px, and requires of each:
// no axe-core violation of any impact (WCAG 2.2 A and AA, best
// practices), no sideways scrolling, a title of its own, a skip link as
// the first Tab stop with a visible focus; and, of its visible text, no
// developer's word (identifiers, file extensions, event codes, ISO dates)
// and, on the pages the person reads, no median-dot endings nor "née ou
// né". Every problem of a run is reported together, page by page.
func TestPageTour(t *testing.T) {
	axe := axeCore(t)
	for _, mode := range []struct {
		name  string
		start func(*testing.T, context.Context, func(context.Context, tourStop)) *tour
	}{{"development", devTour}, {"production", prodTour}} {
		t.Run(mode.name, func(t *testing.T) {
			root := browsertest.New(t, 8*time.Minute)
			c := &tourChecks{t: t, axe: axe, titles: map[string][]string{}}
			mode.start(t, root, c.visit).run()
			t.Logf("%d pages visited: %s", len(c.pages), strings.Join(c.pages, ", "))

			t.Run("accessibility", func(t *testing.T) {
				report(t, "accessibility", c.a11y)
			})
			t.Run("titles", func(t *testing.T) {
				var fs []finding
				for title, pages := range c.titles {
					if len(pages) > 1 {
						fs = append(fs, finding{page: strings.Join(pages, ", "), check: "title", what: fmt.Sprintf("the same title %q", title)})
					}
				}
				sort.Slice(fs, func(i, j int) bool { return fs[i].page < fs[j].page })
				report(t, "titles", fs)
			})
			t.Run("wording", func(t *testing.T) {
				var fs []finding
				for _, pt := range c.texts {
					if pt.stop.Technical {
						continue
					}
					for _, w := range wordingProblems(pt.text, pt.stop.Person) {
						fs = append(fs, finding{page: pt.stop.Name, check: "wording", what: w})
					}
				}
				report(t, "wording", fs)
			})
		})
	}
}

// The visible text of a page must not show what only developers read.
var (
	// developerWords are file extensions and identifier prefixes.
	developerWords = []string{".jwt", "man_", "usa_", "org_", "eidas"}
	// eventCodes are the journal's event types in English
	// ("mandate.created"); people read labels in French.
	eventCodes = func() *regexp.Regexp {
		var alts []string
		for _, ty := range audit.Types {
			alts = append(alts, regexp.QuoteMeta(ty))
		}
		return regexp.MustCompile(`\b(` + strings.Join(alts, "|") + `)\b`)
	}()
	isoDate = regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)
	// For the person: no inclusive-writing median dots inside words
	// ("connecté·e", "informé·es"), no "née ou né".
	medianDot = regexp.MustCompile(`\p{L}·\p{L}*`)
	neeOuNe   = regexp.MustCompile(`(?i)née ou né`)
)

// wordingProblems lists what the visible text of a page must not
// contain, each with a few words around it.
func wordingProblems(text string, person bool) []string {
	var out []string
	context := func(i, j int) string {
		a, b := max(0, i-30), min(len(text), j+30)
		for a > 0 && !isRuneStart(text[a]) {
			a--
		}
		for b < len(text) && !isRuneStart(text[b]) {
			b++
		}
		return strings.Join(strings.Fields(text[a:b]), " ")
	}
	lower := strings.ToLower(text)
	for _, w := range developerWords {
		for off := 0; ; {
			i := strings.Index(lower[off:], w)
			if i < 0 {
				break
			}
			i += off
			out = append(out, fmt.Sprintf("%q in «%s»", w, context(i, i+len(w))))
			off = i + len(w)
		}
	}
	for _, re := range []*regexp.Regexp{eventCodes, isoDate} {
		for _, m := range re.FindAllStringIndex(text, -1) {
			out = append(out, fmt.Sprintf("%q in «%s»", text[m[0]:m[1]], context(m[0], m[1])))
		}
	}
	if person {
		for _, re := range []*regexp.Regexp{medianDot, neeOuNe} {
			for _, m := range re.FindAllStringIndex(text, -1) {
				out = append(out, fmt.Sprintf("%q (person's page) in «%s»", text[m[0]:m[1]], context(m[0], m[1])))
			}
		}
	}
	return out
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// TestWordingChecksCatchDevelopersWords proves the wording checks on
// known text: what they must find, and what they must let through.
func TestWordingChecksCatchDevelopersWords(t *testing.T) {
	for _, c := range []struct {
		text   string
		person bool
		want   int
	}{
		{"Mandat n° man_01JXYZ", false, 1},
		{"Télécharger mandat-man_1.jwt", false, 2},
		{"Personne usa_abc, structure org_def", false, 2},
		{"Niveau eIDAS2", false, 1},
		{"Événement mandate.created le 12/03/2026", false, 1},
		{"Né le 1948-03-12", false, 1},
		{"Camille s'est connecté·e pour vous", true, 1},
		{"Camille s'est connecté·e pour vous", false, 0},
		{"Joséphine, née ou né le 12 mars 1948", true, 1},
		{"Mandat créé le 12 mars 2026 à 10 h 05 par Camille Martin", true, 0},
		{"Connexion d'un aidant · Journal public", false, 0},
	} {
		if got := wordingProblems(c.text, c.person); len(got) != c.want {
			t.Errorf("%q (person %v): %d problems %v, want %d", c.text, c.person, len(got), got, c.want)
		}
	}
}

// TestKeyboardOnlyOnSiteMandate: from the home page to the signed
// attestation, an aidant and the person at her side make a mandate with
// the keyboard alone — Tab, Shift+Tab, Enter and Space key events, no
// mouse, no script acting for them — through the development identity
// providers' pages, which are part of the app in development mode.
func TestKeyboardOnlyOnSiteMandate(t *testing.T) {
	s := startDev(t, "")
	ctx := browsertest.New(t, 3*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/")); err != nil {
		t.Fatal(err)
	}
	k := &keyboard{t: t, ctx: ctx}
	k.press(`a[href="/connexion/aidant"]`, "\r", "/dev/aidants/authorize")
	k.press(`button[value="`+devidp.SubCamille+`"]`, "\r", "/tableau-de-bord")
	k.press(`a[href="/mandats/nouveau"]`, "\r", "/mandats/nouveau")
	k.toggle(`input[name="demarches"][value="argent"]`)
	// Back up the form (argent comes after logement), as a person who
	// changes her mind does.
	k.toggle(`input[name="demarches"][value="logement"]`)
	k.toggle(`input[name="duree"]`)  // the first duration: radios are entered by Tab on the first
	k.focus(`input[name="methode"]`) // "Elle est avec moi", checked already
	if on, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.activeElement.value === "on_site" && document.activeElement.checked`)); !on {
		t.Fatal("the on-site method is not the checked choice that Tab reaches")
	}
	k.press(`form[action="/mandats/nouveau"] button[type="submit"]`, "\r", "/brouillons/")
	k.press(`form[action$="/franceconnect"] button`, "\r", "/dev/franceconnect/authorize")
	k.press(`button[value="`+devidp.SubJosephine+`"]`, "\r", "/brouillons/")
	k.toggle(`input[name="accord_personne"]`)
	k.toggle(`input[name="confirmation_aidant"]`)
	k.press(`form[action$="/signer"] button[type="submit"]`, " ", "/attestation")
	text := textOf(t, ctx)
	for _, want := range []string{"Attestation de mandat", "Joséphine Marie Lefèvre", "Argent - Impôts - Consommation", "Logement"} {
		if !strings.Contains(text, want) {
			t.Errorf("the attestation lacks %q:\n%s", want, text)
		}
	}
	if k.backward == 0 {
		t.Error("the journey never went back with Shift+Tab")
	}
}

// keyboard moves the focus and acts with key events only.
type keyboard struct {
	t        *testing.T
	ctx      context.Context
	backward int // Shift+Tab presses
}

// focus presses Tab (or Shift+Tab, when the element is before the
// focus) until the focused element matches sel; it fails after 60 key
// presses, which no page of the journey needs.
func (k *keyboard) focus(sel string) {
	k.t.Helper()
	for range 60 {
		// Where sel is from the focus: 0 it has it, 1 after, -1 before.
		where, err := chromedp.Run(k.ctx, chromedp.Evaluate[int](`(() => {
			const a = document.activeElement, el = document.querySelector(`+jsString(sel)+`);
			if (!el) return 2;
			if (a && a.matches(`+jsString(sel)+`)) return 0;
			if (!a || a === document.body) return 1;
			return (a.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) ? 1 : -1;
		})()`))
		if err != nil {
			k.t.Fatal(err)
		}
		switch where {
		case 0:
			return
		case 2:
			loc, _ := chromedp.Run(k.ctx, chromedp.Location())
			k.t.Fatalf("no %s on %s", sel, loc)
		case 1:
			err = chromedp.Do(k.ctx, chromedp.KeyEvent("\t"))
		case -1:
			k.backward++
			err = chromedp.Do(k.ctx, chromedp.KeyEvent("\t", chromedp.KeyModifiers(chromedp.ModifierShift)))
		}
		if err != nil {
			k.t.Fatal(err)
		}
	}
	loc, _ := chromedp.Run(k.ctx, chromedp.Location())
	k.t.Fatalf("the keyboard does not reach %s on %s", sel, loc)
}

// toggle focuses the checkbox or radio sel and presses Space; it must
// then be checked.
func (k *keyboard) toggle(sel string) {
	k.t.Helper()
	k.focus(sel)
	if err := chromedp.Do(k.ctx, chromedp.KeyEvent(" ")); err != nil {
		k.t.Fatal(err)
	}
	if on, err := chromedp.Run(k.ctx, chromedp.Evaluate[bool](`document.activeElement.checked === true`)); err != nil || !on {
		k.t.Fatalf("Space did not check %s (%v)", sel, err)
	}
}

// press focuses sel, presses key (Enter or Space) and waits for the page
// at want.
func (k *keyboard) press(sel, key, want string) {
	k.t.Helper()
	k.focus(sel)
	if err := followTo(k.ctx, want, chromedp.KeyEvent(key)); err != nil {
		loc, _ := chromedp.Run(k.ctx, chromedp.Location())
		k.t.Fatalf("%q on %s: no page at %s (at %s): %v", key, sel, want, loc, err)
	}
}

// screensEnv names the folder where TestScreens writes the screenshots
// (make screens); without it the test does nothing.
const screensEnv = "AIDANTS_SCREENS"

// TestScreens takes a full-page screenshot of every page of the tour at
// each width into $AIDANTS_SCREENS (make screens: docs/screens), with a
// README listing them. The pages are those of the production-mode
// instance, as people see them, and the pages that only development mode
// has (its identity providers and demo service).
func TestScreens(t *testing.T) {
	dir := os.Getenv(screensEnv)
	if dir == "" {
		t.Skip(screensEnv + " is not set: make screens regenerates docs/screens")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	var stops []tourStop
	taken := map[string]bool{}
	shoot := func(ctx context.Context, stop tourStop) {
		t.Helper()
		if taken[stop.Name] {
			return
		}
		taken[stop.Name] = true
		stops = append(stops, stop)
		for _, w := range tourWidths {
			if err := browsertest.SetWidth(ctx, w); err != nil {
				t.Fatal(err)
			}
			png, err := browsertest.FullPageScreenshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", stop.Name, w)), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	prodTour(t, browsertest.New(t, 6*time.Minute), shoot).run()
	devTour(t, browsertest.New(t, 6*time.Minute), func(ctx context.Context, stop tourStop) {
		if !taken[stop.Name] {
			stop.About += " (development mode only)"
			shoot(ctx, stop)
		}
	}).run()
	var b strings.Builder
	b.WriteString("# Screens\n\nEvery page of the page tour (`cmd/aidants/tour_test.go`), full page, at 320 and 1280 CSS pixels wide,\n" +
		"as `make screens` took them last: the pages of an instance in production mode, then the pages that\n" +
		"only development mode has. Regenerate them with `make screens` after a change to the pages.\n\n" +
		"| page | what it is | 320 px | 1280 px |\n| --- | --- | --- | --- |\n")
	for _, s := range stops {
		fmt.Fprintf(&b, "| `%s` | %s | [%s-320.png](%s-320.png) | [%s-1280.png](%s-1280.png) |\n", s.Name, s.About, s.Name, s.Name, s.Name, s.Name)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPageChecksCatchBrokenPages proves the tour's browser checks on a
// page made wrong on purpose: axe-core finds the image without text and
// the field without a label, the overflow check finds the page wider than
// a phone, the keyboard check finds no skip link, and the visible text
// leaves out a closed <details> but keeps an open one.
func TestPageChecksCatchBrokenPages(t *testing.T) {
	axe := axeCore(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html lang="fr"><head><title>Cassée</title></head><body><main>
<h1>Page cassée</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><input type="text">
<div style="width:900px">large</div><button type="button" style="height:20px;padding:0">petit</button>
<details><summary>Voir</summary>man_caché</details><details open><summary>Ouvert</summary>usa_visible</details>
</main></body></html>`)
	}))
	t.Cleanup(srv.Close)
	ctx := browsertest.New(t, time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	if err := browsertest.SetWidth(ctx, 320); err != nil {
		t.Fatal(err)
	}
	vs, err := browsertest.Axe(ctx, axe)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, v := range vs {
		found[v.ID] = true
	}
	for _, id := range []string{"image-alt", "label"} {
		if !found[id] {
			t.Errorf("axe did not report %s: %+v", id, vs)
		}
	}
	if o, err := browsertest.HorizontalOverflow(ctx); err != nil || !o.Scrolls() {
		t.Errorf("the 900 px block does not count as sideways scrolling at 320 px: %+v %v", o, err)
	}
	if ps, err := browsertest.KeyboardStartProblems(ctx); err != nil || len(ps) == 0 {
		t.Errorf("a page without a skip link passes the keyboard check: %v %v", ps, err)
	}
	if small, err := browsertest.SmallTargets(ctx, 44); err != nil || len(small) != 1 || !strings.Contains(small[0], "petit") {
		t.Errorf("the 20 px button is not a small target: %v %v", small, err)
	}
	text, err := browsertest.VisibleText(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := wordingProblems(text, false); len(got) != 1 || !strings.Contains(got[0], "usa_") {
		t.Errorf("wording problems of the visible text %q: %v, want only the open details' usa_", text, got)
	}
}
