package web

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"aidants/stats"
)

// TestStatsChartBarsAreProportionalToTheirFigures: the longest bar is the
// largest figure, the others in proportion, a zero has no bar, and every
// bar stays inside the chart's 320-unit viewBox.
func TestStatsChartBarsAreProportionalToTheirFigures(t *testing.T) {
	c := newChart("x", "Titre", "Résumé.", []string{"a", "b", "c", "d"}, []int{10, 5, 0, 1})
	want := []int{chartBarMax, chartBarMax / 2, 0, chartBarMax / 10}
	for i, b := range c.Bars {
		if b.W != want[i] || b.ValueX+30 > chartWidth {
			t.Errorf("bar %s: width %d, figure at %d; want width %d within %d", b.Label, b.W, b.ValueX, want[i], chartWidth)
		}
		if i > 0 && b.Y <= c.Bars[i-1].BarY {
			t.Errorf("bar %s overlaps the previous one", b.Label)
		}
	}
	if last := c.Bars[len(c.Bars)-1]; last.ValueY > c.Height {
		t.Errorf("the last figure at %d is below the chart's height %d", last.ValueY, c.Height)
	}
}

// TestStatsCSVHasFrenchColumnsAndDefusesFormulas: the CSV export of the
// statistics is the French spreadsheets' (BOM, ";"), and a name a
// spreadsheet would run is written as text.
func TestStatsCSVHasFrenchColumnsAndDefusesFormulas(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	rep := &stats.Report{OrganisationID: "org_1", From: now, Now: now,
		Months:   []stats.Month{{Start: now, Created: 3, Active: 2, Revoked: 1, Expired: 4}},
		ByAidant: []stats.Count{{Key: "aid_1", Name: "=HYPERLINK(\"x\")", N: 2}}}
	for table, want := range map[string]string{
		"mandats": "\ufeffMois;Mandats créés;Mandats actifs en fin de mois;Mandats révoqués;Mandats arrivés à leur fin\ndécembre 2026;3;2;1;4\n",
		"aidants": "\ufeffAidant;Démarches faites\n\"'=HYPERLINK(\"\"x\"\")\";2\n",
	} {
		w := httptest.NewRecorder()
		if err := writeStatsCSV(w, rep, table, "s-"); err != nil {
			t.Fatal(err)
		}
		if got := w.Body.String(); got != want {
			t.Errorf("%s:\n got %q\nwant %q", table, got, want)
		}
		if !strings.Contains(w.Header().Get("Content-Disposition"), "s-"+table+".csv") {
			t.Errorf("%s: %q", table, w.Header().Get("Content-Disposition"))
		}
	}
}
