package web

import (
	"fmt"
	"net/http"
	"strconv"

	"aidants/audit"
	"aidants/auth"
	"aidants/mandate"
	"aidants/stats"
)

// The statistics (issue 14 item 5): the référent's of their organisation
// at /structure/statistiques, and the instance's national figures at
// /statistiques when the operator turned them on (Options.PublicStats).
// Charts are SVG drawn here, with no script: each has a title, a sentence
// that says what it shows, and its figures in a table below, which the
// CSV export gives as well.

// chart is a horizontal bar chart: one row per label, so that it reads on
// a phone as well as on a wide screen.
type chart struct {
	ID, Title, Summary string
	Height             int
	Bars               []chartBar
}

type chartBar struct {
	Label      string
	N          int
	Y, BarY, W int // the label's baseline, the bar's top, its width
	ValueX     int // where the figure is written, after the bar
	ValueY     int
}

const (
	chartWidth  = 320 // the viewBox; the SVG scales to its container
	chartBarMax = 250
	chartRow    = 40
)

func newChart(id, title, summary string, labels []string, values []int) chart {
	c := chart{ID: id, Title: title, Summary: summary, Height: chartRow*len(labels) + 8}
	top := 1
	for _, v := range values {
		top = max(top, v)
	}
	for i, l := range labels {
		w := values[i] * chartBarMax / top
		if values[i] > 0 {
			w = max(w, 2)
		}
		c.Bars = append(c.Bars, chartBar{Label: l, N: values[i], Y: chartRow*i + 16, BarY: chartRow*i + 22, W: w, ValueX: w + 6, ValueY: chartRow*i + 33})
	}
	return c
}

// plural writes "1 mandat" or "3 mandats".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

type statsPage struct {
	Page
	Public      bool   // the national page, without names
	OrgName     string // "" for the national figures
	Report      *stats.Report
	From        string  // the first month, "janvier 2026"
	Mandates    []chart // created, active, revoked, expired per month
	Demarche    chart
	AidantChart chart
	Remote      chart
	CSV         string // the export's path, without the table
}

func newStatsPage(base Page, rep *stats.Report, public bool, orgName, csv string) *statsPage {
	p := &statsPage{Page: base, Public: public, OrgName: orgName, Report: rep, CSV: csv, From: mandate.FrenchMonth(rep.From)}
	var months []string
	var created, active, revoked, expired []int
	busiest := 0
	for i, m := range rep.Months {
		months = append(months, m.Label())
		created, active, revoked, expired = append(created, m.Created), append(active, m.Active), append(revoked, m.Revoked), append(expired, m.Expired)
		if m.Created > rep.Months[busiest].Created {
			busiest = i
		}
	}
	c, a, rv, x := rep.Totals()
	createdSummary := fmt.Sprintf("En 12 mois, %s.", plural(c, "mandat a été créé", "mandats ont été créés"))
	if c > 0 {
		createdSummary = fmt.Sprintf("En 12 mois, %s ; le mois où il y en a eu le plus est %s (%d).", plural(c, "mandat a été créé", "mandats ont été créés"),
			months[busiest], rep.Months[busiest].Created)
	}
	p.Mandates = []chart{
		newChart("mandats-crees", "Mandats créés chaque mois", createdSummary, months, created),
		newChart("mandats-actifs", "Mandats actifs à la fin de chaque mois",
			fmt.Sprintf("Aujourd'hui, %s.", plural(a, "mandat est actif", "mandats sont actifs")), months, active),
		newChart("mandats-revoques", "Mandats révoqués chaque mois",
			fmt.Sprintf("En 12 mois, %s avant leur fin.", plural(rv, "mandat a été révoqué", "mandats ont été révoqués")), months, revoked),
		newChart("mandats-expires", "Mandats arrivés à leur fin chaque mois",
			fmt.Sprintf("En 12 mois, %s.", plural(x, "mandat est arrivé à sa fin", "mandats sont arrivés à leur fin")), months, expired),
	}
	n := rep.Actions()
	var dl []string
	var dv []int
	for _, d := range rep.ByDemarche {
		dl, dv = append(dl, d.Name), append(dv, d.N)
	}
	sum := fmt.Sprintf("En 12 mois, %s pour des personnes.", plural(n, "démarche a été faite", "démarches ont été faites"))
	if len(rep.ByDemarche) > 0 {
		sum = fmt.Sprintf("En 12 mois, %s pour des personnes ; la démarche la plus fréquente est « %s » (%d).",
			plural(n, "démarche a été faite", "démarches ont été faites"), rep.ByDemarche[0].Name, rep.ByDemarche[0].N)
	}
	p.Demarche = newChart("actions-demarches", "Démarches faites pour des personnes, par démarche", sum, dl, dv)
	if !public {
		var al []string
		var av []int
		for _, d := range rep.ByAidant {
			al, av = append(al, d.Name), append(av, d.N)
		}
		sum := "En 12 mois, aucun aidant n'a fait de démarche pour une personne."
		if len(rep.ByAidant) > 0 {
			sum = fmt.Sprintf("En 12 mois, %s ; %s en a fait le plus (%d).", plural(len(rep.ByAidant), "aidant a fait des démarches pour des personnes",
				"aidants ont fait des démarches pour des personnes"), rep.ByAidant[0].Name, rep.ByAidant[0].N)
		}
		p.AidantChart = newChart("actions-aidants", "Démarches faites pour des personnes, par aidant", sum, al, av)
	}
	total := rep.Remote + rep.OnSite
	sum = "En 12 mois, aucun accord n'a été donné."
	if total > 0 {
		sum = fmt.Sprintf("%d %% des accords ont été donnés à distance : %d sur %d ; %d sur place, avec l'aidant.", rep.RemotePercent(), rep.Remote, total, rep.OnSite)
	}
	p.Remote = newChart("accords", "Accords donnés à distance ou sur place", sum, []string{"À distance", "Sur place"}, []int{rep.Remote, rep.OnSite})
	return p
}

// structureStats shows the current organisation's figures to its référent.
func (s *Server) structureStats(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	rep, err := stats.Compute(r.Context(), s.log.DB(), p.OrganisationID, s.now())
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "statistiques", newStatsPage(s.base(r), rep, false, p.OrganisationName, "/structure/statistiques.csv"))
	return nil
}

// structureStatsCSV exports one table of the organisation's figures. It
// names aidants, so the export is journaled like the journal's.
func (s *Server) structureStatsCSV(w http.ResponseWriter, r *http.Request) error {
	p := auth.PrincipalFrom(r.Context())
	table := r.URL.Query().Get("tableau")
	if !validTable(table, false) {
		return badRequest("Ce tableau n'existe pas.")
	}
	rep, err := stats.Compute(r.Context(), s.log.DB(), p.OrganisationID, s.now())
	if err != nil {
		return err
	}
	if err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
		_, err := tx.Append(audit.Event{Type: audit.AuditExported, Actor: p.Actor(), Aidant: p.AidantID, Organisation: p.OrganisationID,
			Detail: map[string]any{"format": "csv", "scope": "statistics", "table": table}})
		return err
	}); err != nil {
		return err
	}
	return writeStatsCSV(w, rep, table, "statistiques-structure-")
}

// publicStats shows the national figures, when the operator allows it.
func (s *Server) publicStats(w http.ResponseWriter, r *http.Request) error {
	if !s.opts.PublicStats {
		return errNotFound
	}
	rep, err := stats.Compute(r.Context(), s.log.DB(), "", s.now())
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "statistiques", newStatsPage(s.base(r), rep, true, "", "/statistiques.csv"))
	return nil
}

func (s *Server) publicStatsCSV(w http.ResponseWriter, r *http.Request) error {
	if !s.opts.PublicStats {
		return errNotFound
	}
	table := r.URL.Query().Get("tableau")
	if !validTable(table, true) {
		return badRequest("Ce tableau n'existe pas.")
	}
	rep, err := stats.Compute(r.Context(), s.log.DB(), "", s.now())
	if err != nil {
		return err
	}
	return writeStatsCSV(w, rep, table, "statistiques-nationales-")
}

func validTable(t string, public bool) bool {
	switch t {
	case "mandats", "demarches", "accords":
		return true
	case "aidants":
		return !public
	}
	return false
}

// writeStatsCSV writes one table, with the page table's French columns.
func writeStatsCSV(w http.ResponseWriter, rep *stats.Report, table, prefix string) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+prefix+table+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := frenchCSV(w)
	itoa := strconv.Itoa
	switch table {
	case "mandats":
		cw.Write([]string{"Mois", "Mandats créés", "Mandats actifs en fin de mois", "Mandats révoqués", "Mandats arrivés à leur fin"})
		for _, m := range rep.Months {
			cw.Write([]string{m.Label(), itoa(m.Created), itoa(m.Active), itoa(m.Revoked), itoa(m.Expired)})
		}
	case "demarches":
		cw.Write([]string{"Démarche", "Démarches faites"})
		for _, c := range rep.ByDemarche {
			cw.Write(csvSafe([]string{c.Name, itoa(c.N)}))
		}
	case "aidants":
		cw.Write([]string{"Aidant", "Démarches faites"})
		for _, c := range rep.ByAidant {
			cw.Write(csvSafe([]string{c.Name, itoa(c.N)}))
		}
	case "accords":
		cw.Write([]string{"Accord donné", "Mandats"})
		cw.Write([]string{"À distance", itoa(rep.Remote)})
		cw.Write([]string{"Sur place", itoa(rep.OnSite)})
	}
	cw.Flush()
	return cw.Error()
}
