package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aidants/audit"
	"aidants/devidp"
	"aidants/internal/browsertest"
	"aidants/mandate"
	"aidants/org"
	"aidants/stats/statstest"
	"aidants/store/storetest"
)

// statsTables are the statistics tables as a person reads them, by the
// table's id suffix; the rows of démarches and aidants sorted by name.
type statsTables map[string][][]string

// expectTables writes the figures computed from the seed as the page's
// tables: names are the aidants' names by id (nil for the national page).
func expectTables(w *statstest.Expected, names map[string]string) statsTables {
	out := statsTables{}
	for i, m := range w.Months {
		out["mandats"] = append(out["mandats"], []string{m, strconv.Itoa(w.Created[i]), strconv.Itoa(w.Active[i]), strconv.Itoa(w.Revoked[i]), strconv.Itoa(w.Expired[i])})
	}
	for code, n := range w.ByDemarche {
		out["demarches"] = append(out["demarches"], []string{mandate.Label(code), strconv.Itoa(n)})
	}
	if names != nil {
		for id, n := range w.ByAidant {
			out["aidants"] = append(out["aidants"], []string{names[id], strconv.Itoa(n)})
		}
	}
	out["accords"] = [][]string{{"À distance", strconv.Itoa(w.Remote)}, {"Sur place", strconv.Itoa(w.OnSite)}}
	for _, k := range []string{"demarches", "aidants"} {
		slices.SortFunc(out[k], func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	}
	return out
}

var (
	tableRe = regexp.MustCompile(`(?s)<table class="stack" id="tableau-([a-z]+)">.*?<tbody>(.*?)</tbody>`)
	rowRe   = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	cellRe  = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
)

// pageTables reads the tables of a statistics page.
func pageTables(body string) statsTables {
	out := statsTables{}
	for _, tm := range tableRe.FindAllStringSubmatch(body, -1) {
		if tm[1] == "signalements" {
			continue // issue 15's figures: TestPersonObjectsAndTheReferentAnswers
		}
		rows := [][]string{}
		for _, rm := range rowRe.FindAllStringSubmatch(tm[2], -1) {
			var cells []string
			for _, cm := range cellRe.FindAllStringSubmatch(rm[1], -1) {
				cells = append(cells, html.UnescapeString(strings.TrimSpace(cm[1])))
			}
			if len(cells) == 2 && cells[1] == "" { // "Aucune démarche faite"
				continue
			}
			rows = append(rows, cells)
		}
		if tm[1] == "demarches" || tm[1] == "aidants" {
			slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
		}
		out[tm[1]] = rows
	}
	return out
}

func compareTables(t *testing.T, what string, got, want statsTables) {
	t.Helper()
	for k, w := range want {
		g := got[k]
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s, table %s:\n got %q\nwant %q", what, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected table %s", what, k)
		}
	}
}

// csvTables downloads each table's CSV and reads it like the page's.
func csvTables(t *testing.T, c *http.Client, base string, tables []string) statsTables {
	t.Helper()
	out := statsTables{}
	header := map[string]string{"mandats": "Mois;Mandats créés;Mandats actifs en fin de mois;Mandats révoqués;Mandats arrivés à leur fin",
		"demarches": "Démarche;Démarches faites", "aidants": "Aidant;Démarches faites", "accords": "Accord donné;Mandats"}
	for _, table := range tables {
		resp, err := c.Get(base + "?tableau=" + table)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := frenchCSV(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(rows) == 0 {
			t.Fatalf("CSV %s: %d %v", table, resp.StatusCode, err)
		}
		if strings.Join(rows[0], ";") != header[table] {
			t.Errorf("CSV %s columns %q", table, rows[0])
		}
		rows = rows[1:]
		if table == "demarches" || table == "aidants" {
			slices.SortFunc(rows, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
		}
		out[table] = rows
	}
	return out
}

// checkCharts checks that each table comes with its charts: SVG with a
// title it is labelled by, and a summary.
func checkCharts(t *testing.T, body string, n int) {
	t.Helper()
	if got := strings.Count(body, `role="img"`); got != n {
		t.Errorf("%d charts, want %d", got, n)
	}
	for _, m := range regexp.MustCompile(`<svg role="img" aria-labelledby="([a-z-]+)-titre ([a-z-]+)-resume"`).FindAllStringSubmatch(body, -1) {
		if !strings.Contains(body, `<title id="`+m[1]+`-titre">`) || !strings.Contains(body, `<span id="`+m[2]+`-resume">`) {
			t.Errorf("chart %s has no title or summary", m[1])
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("a script on the statistics page")
	}
}

// TestStatisticsPageShowsTheOrganisationsFiguresOnly seeds the demo
// organisation and the second one of development mode, then compares the
// référent's page and CSV with the figures computed from the seed; checks
// who may see them, and that the public page is off by default.
func TestStatisticsPageShowsTheOrganisationsFiguresOnly(t *testing.T) {
	s := startDev(t, "")
	d := seedStatsDev(t, s)
	demo, second, seedA, seedB, now := d.demo, d.second, d.seedA, d.seedB, d.now
	camille, dominique, alex := d.camille, d.dominique, d.alex
	names := map[string]string{camille: "Camille Martin", dominique: "Dominique Bernard", alex: "Alex Moreau"}

	sacha := browser(t)
	signInAidant(t, sacha, s, devidp.SubSacha)
	if _, _, body := get(t, sacha, s.URL+"/structure"); !strings.Contains(body, `href="/structure/statistiques"`) {
		t.Error("no link to the statistics from Ma structure")
	}
	_, status, body := get(t, sacha, s.URL+"/structure/statistiques")
	if status != http.StatusOK {
		t.Fatalf("statistics: %d\n%s", status, body)
	}
	if !strings.Contains(body, "<title>Statistiques de la structure — Aidants</title>") {
		t.Error("the page's title")
	}
	want := expectTables(statstest.Expect(now, demo.ID, seedA, seedB), names)
	compareTables(t, "the référent's page", pageTables(body), want)
	compareTables(t, "the référent's CSV", csvTables(t, sacha, s.URL+"/structure/statistiques.csv", []string{"mandats", "demarches", "aidants", "accords"}), want)
	checkCharts(t, body, 7)
	text := html.UnescapeString(body)
	if strings.Contains(text, "Alex Moreau") {
		t.Error("the other organisation's aidant shows")
	}
	if n := count(t, openDB(t, s), `SELECT COUNT(*) FROM audit_events WHERE type = 'audit.exported' AND organisation_id = ?`, demo.ID); n != 4 {
		t.Errorf("%d exports journaled, want 4", n)
	}
	if _, _, journal := get(t, sacha, s.URL+"/structure/journal?type=audit.exported"); strings.Count(html.UnescapeString(journal), "Statistiques exportées") != 4 {
		t.Errorf("the journal does not say the statistics were exported:\n%s", journal)
	}
	if _, status, _ := get(t, sacha, s.URL+"/structure/statistiques.csv?tableau=autre"); status != http.StatusBadRequest {
		t.Errorf("an unknown table: %d", status)
	}

	// Not a référent: what the other référent pages give.
	camilleC := browser(t)
	signInAidant(t, camilleC, s, devidp.SubCamille)
	for _, u := range []string{"/structure/statistiques", "/structure/statistiques.csv?tableau=aidants"} {
		if _, status, body := get(t, camilleC, s.URL+u); status != http.StatusForbidden || !strings.Contains(body, "Réservé aux référents") {
			t.Errorf("Camille at %s: %d", u, status)
		}
	}
	// The référent of the second organisation sees its figures, never the
	// demo's; in the demo organisation, where Alex is no référent, nothing.
	alexC := browser(t)
	signInAidant(t, alexC, s, devidp.SubAlex)
	postForm(t, alexC, s.URL+"/structures", map[string][]string{"organisation": {demo.ID}})
	if _, status, _ := get(t, alexC, s.URL+"/structure/statistiques"); status != http.StatusForbidden {
		t.Errorf("Alex in the demo organisation: %d", status)
	}
	postForm(t, alexC, s.URL+"/structures", map[string][]string{"organisation": {second.ID}})
	_, status, body = get(t, alexC, s.URL+"/structure/statistiques")
	if status != http.StatusOK {
		t.Fatalf("Alex's statistics: %d", status)
	}
	compareTables(t, "the second organisation's page", pageTables(body), expectTables(statstest.Expect(now, second.ID, seedA, seedB), names))
	if text := html.UnescapeString(body); strings.Contains(text, "Camille Martin") || strings.Contains(text, "Dominique Bernard") {
		t.Error("the demo organisation's aidants show to the second's référent")
	}

	// The public page is off unless the operator turns it on.
	anon := browser(t)
	for _, u := range []string{"/statistiques", "/statistiques.csv?tableau=mandats"} {
		if _, status, _ := get(t, anon, s.URL+u); status != http.StatusNotFound {
			t.Errorf("%s when off: %d", u, status)
		}
	}
}

// TestStatisticsNationalOnPostgresPublicPageAndCommand serves an instance
// on PostgreSQL with the public statistics on: the page and its CSV give
// the national figures with no aidant's name, and `aidants stats` prints
// the same figures, nationally and for one organisation.
func TestStatisticsNationalOnPostgresPublicPageAndCommand(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	dir := t.TempDir()
	key, _ := audit.GenerateKey("stats.aidants.invalid/audit")
	keyFile := filepath.Join(dir, "audit.key")
	os.WriteFile(keyFile, []byte(key), 0o600)
	addr := freeAddr(t)
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	defer idp.Close()
	p, err := devidp.New(devidp.Options{Issuer: idp.URL + "/idp", Kind: devidp.KindAidants, Identities: devidp.AidantIdentities(demoSIRET),
		Clients: []devidp.Client{{ID: "aidants", Secret: "s3cret", RedirectURIs: []string{"http://" + addr + "/connexion/aidant/retour"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/idp/", p)
	secret := "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	config := filepath.Join(dir, "config.toml")
	os.WriteFile(config, []byte(fmt.Sprintf(`
[server]
public_url = "http://%s"
listen = %q
public_statistics = true
[database]
driver = "postgres"
dsn = %q
[session]
secret = %q
[aidants_provider]
issuer = %q
client_id = "aidants"
client_secret = "s3cret"
[franceconnect]
issuer = "https://franceconnect.test.invalid"
client_id = "f"
client_secret = "s"
[audit]
origin = "stats.aidants.invalid/audit"
signing_key_file = %q
witness_state_file = %q
[keys]
encryption_secret = %q
[provider]
pairwise_secret = %q
[log]
level = "warn"
`, addr, addr, dsn, secret, idp.URL+"/idp", keyFile, filepath.Join(dir, "witness-state"), secret, secret)), 0o600)
	c := cli{t: t, base: []string{"--config", config}}
	c.ok("org", "add", "--name", "Structure A", "--siret", demoSIRET)
	c.ok("org", "add", "--name", "Structure B", "--siret", secondSIRET)
	c.ok("aidant", "add", "--org", demoSIRET, "--email", "zoe@example.org", "--given-name", "Zoé", "--family-name", "Lambert", "--habilitated-until", "2099-12-31")
	c.ok("aidant", "add", "--org", demoSIRET, "--email", "yann@example.org", "--given-name", "Yann", "--family-name", "Le Goff", "--habilitated-until", "2099-12-31")
	c.ok("aidant", "add", "--org", secondSIRET, "--email", "xavier@example.org", "--given-name", "Xavier", "--family-name", "Roux", "--habilitated-until", "2099-12-31")

	ctx := context.Background()
	cfg, err := (&envFlags{config: config}).load("")
	if err != nil {
		t.Fatal(err)
	}
	in, err := open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	a, _ := in.dir.OrganisationBySIRET(ctx, demoSIRET)
	b, _ := in.dir.OrganisationBySIRET(ctx, secondSIRET)
	id := func(email string) string {
		x, err := in.dir.AidantByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		return x.ID
	}
	zoe, yann, xavier := id("zoe@example.org"), id("yann@example.org"), id("xavier@example.org")
	now := time.Now()
	seeds := statstest.Write(t, in.log, now, statstest.Org{ID: a.ID, A1: zoe, A2: yann}, statstest.Org{ID: b.ID, A1: xavier, A2: xavier})

	s := startServe(t, "", []string{"serve", "--config", config})
	anon := browser(t)
	_, status, body := get(t, anon, s.URL+"/statistiques")
	if status != http.StatusOK {
		t.Fatalf("public statistics: %d", status)
	}
	if !strings.Contains(body, "<title>Statistiques nationales — Aidants</title>") {
		t.Error("the public page's title")
	}
	national := statstest.Expect(now, "", seeds...)
	want := expectTables(national, nil)
	compareTables(t, "the public page", pageTables(body), want)
	compareTables(t, "the public CSV", csvTables(t, anon, s.URL+"/statistiques.csv", []string{"mandats", "demarches", "accords"}), want)
	checkCharts(t, body, 6)
	text := html.UnescapeString(body)
	for _, name := range []string{"Zoé", "Lambert", "Yann", "Xavier", "Roux", "Structure A"} {
		if strings.Contains(text, name) {
			t.Errorf("the public page names %q", name)
		}
	}
	if _, status, _ := get(t, anon, s.URL+"/statistiques.csv?tableau=aidants"); status != http.StatusBadRequest {
		t.Errorf("the public aidants table: %d", status)
	}

	// aidants stats: every figure of the page, nationally then for A.
	checkOutput := func(out string, w *statstest.Expected, names []string) {
		t.Helper()
		starts, _ := stats0(now)
		for i, m := range starts {
			line := fmt.Sprintf("%s %d %d %d %d", m, w.Created[i], w.Active[i], w.Revoked[i], w.Expired[i])
			if !strings.Contains(strings.Join(strings.Fields(out), " "), line) {
				t.Errorf("no line %q in\n%s", line, out)
			}
		}
		for code, n := range w.ByDemarche {
			if !regexp.MustCompile(`(?m)^` + code + `\s+` + strconv.Itoa(n) + `$`).MatchString(out) {
				t.Errorf("no %s %d in\n%s", code, n, out)
			}
		}
		if !strings.Contains(out, fmt.Sprintf("%d remote, %d on site", w.Remote, w.OnSite)) {
			t.Errorf("no consents in\n%s", out)
		}
		for _, n := range names {
			if !regexp.MustCompile(n).MatchString(out) {
				t.Errorf("no %s in\n%s", n, out)
			}
		}
	}
	out := c.ok("stats")
	checkOutput(out, national, nil)
	if strings.Contains(out, "Zoé") {
		t.Error("the national figures name aidants")
	}
	wa := statstest.Expect(now, a.ID, seeds...)
	out = c.ok("stats", "--org", a.ID)
	checkOutput(out, wa, []string{fmt.Sprintf(`Zoé Lambert\s+%d\s`, wa.ByAidant[zoe]), fmt.Sprintf(`Yann Le Goff\s+%d\s`, wa.ByAidant[yann])})
	if strings.Contains(out, "Xavier") {
		t.Error("another organisation's aidant in --org")
	}
	if out2 := c.ok("stats", "--org", demoSIRET); out2 != out {
		t.Errorf("--org SIRET and --org ID differ")
	}
	if _, err := c.run("stats", "--org", "org_inconnue"); err == nil || !strings.Contains(err.Error(), "no organisation") {
		t.Errorf("an unknown organisation: %v", err)
	}
}

// stats0 lists the window's months as the command prints them.
func stats0(now time.Time) ([]string, error) {
	p := now.In(mandate.Paris)
	var out []string
	for i := 11; i >= 0; i-- {
		out = append(out, time.Date(p.Year(), p.Month()-time.Month(i), 1, 0, 0, 0, 0, mandate.Paris).Format("2006-01"))
	}
	return out, nil
}

// statsDev is a development instance with the statistics seed in its two
// organisations; Alex is référent of the second one only.
type statsDev struct {
	demo, second             *org.Organisation
	seedA, seedB             *statstest.Seed
	now                      time.Time
	camille, dominique, alex string
}

func seedStatsDev(t *testing.T, s *testServer) *statsDev {
	t.Helper()
	ctx := context.Background()
	cfg, err := devConfig(s.Data, "")
	if err != nil {
		t.Fatal(err)
	}
	in, err := open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	demo, _ := in.dir.OrganisationBySIRET(ctx, demoSIRET)
	second, _ := in.dir.OrganisationBySIRET(ctx, secondSIRET)
	camille, dominique, alex := aidantID(t, s, devidp.EmailCamille), aidantID(t, s, devidp.EmailDominique), aidantID(t, s, devidp.EmailAlex)
	now := time.Now()
	seeds := statstest.Write(t, in.log, now, statstest.Org{ID: demo.ID, A1: camille, A2: dominique}, statstest.Org{ID: second.ID, A1: alex, A2: alex})
	seedA, seedB := seeds[0], seeds[1]
	// Alex is référent of the second organisation only.
	if err := in.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`UPDATE memberships SET is_referent = TRUE WHERE aidant_id = ? AND organisation_id = ?`, alex, second.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return &statsDev{demo: demo, second: second, seedA: seedA, seedB: seedB, now: now, camille: camille, dominique: dominique, alex: alex}
}

// TestBrowserStatisticsFitAPhone opens the statistics from "Ma structure"
// in a real browser 320 pixels wide: nothing scrolls sideways, and each
// chart is drawn as wide as the page and no wider.
func TestBrowserStatisticsFitAPhone(t *testing.T) {
	s := startDev(t, "")
	seedStatsDev(t, s)
	sacha := browsertest.New(t, 120*time.Second)
	browserSignIn(t, sacha, s, devidp.SubSacha)
	for _, width := range []int64{320, 1280} {
		err := chromedp.Do(sacha,
			chromedp.EmulateViewport(width, 800),
			chromedp.Navigate(s.URL+"/structure"),
			chromedp.Click(chromedp.CSS(`a[href="/structure/statistiques"]`), chromedp.NodeVisible),
			chromedp.WaitVisible(chromedp.CSS(`#tableau-accords`)),
		)
		if err != nil {
			t.Fatal(err)
		}
		fits, err := chromedp.Run(sacha, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= document.documentElement.clientWidth`))
		if err != nil || !fits {
			t.Errorf("at %d px the statistics scroll sideways (%v)", width, err)
		}
		charts, err := chromedp.Run(sacha, chromedp.Evaluate[int](`[...document.querySelectorAll('figure.chart svg')].filter(s => {
			const r = s.getBoundingClientRect(); return r.width > 100 && r.right <= document.documentElement.clientWidth && r.height > 0 }).length`))
		if err != nil || charts != 7 {
			t.Errorf("at %d px, %d charts drawn within the page, want 7 (%v)", width, charts, err)
		}
	}
	if text := textOf(t, sacha); !strings.Contains(text, "Camille Martin") || !strings.Contains(text, "des accords ont été donnés à distance") {
		t.Errorf("the page as read:\n%s", text)
	}
}
