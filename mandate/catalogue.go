// Package mandate owns what an organisation may do for a person: the
// catalogue of démarches and durations, the mandate lifecycle and its
// rules (consent bound to the person's FranceConnect authentication,
// revocation, renewal, supersession), and signing and verifying mandates.
//
// It does not know HTTP: handlers in package web translate requests into
// calls here, and every state change is written through the audit log in
// the same transaction as its event.
package mandate

import (
	"fmt"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Paris everywhere, whatever the host has
)

// Demarche is a category of online procedures (SPEC §3.1).
type Demarche struct {
	Code     string // stable code stored in mandates and events
	Label    string // French label shown to people
	RepScope string // the value FranceConnect uses in rep_scope
}

// Demarches is the catalogue, in display order.
var Demarches = []Demarche{
	{"papiers", "Papiers - Citoyenneté - Élections", "Papier-Citoyenneté-Elections"},
	{"famille", "Famille - Scolarité", "Famille-Scolarité"},
	{"social", "Social - Santé", "Social-Santé"},
	{"travail", "Travail - Formation", "Travail-Formation"},
	{"logement", "Logement", "Logement"},
	{"transports", "Transports - Mobilité", "Transports-Mobilité"},
	{"argent", "Argent - Impôts - Consommation", "Argent-Impots-Consommation"},
	{"justice", "Justice", "Justice"},
	{"etranger", "Étranger - Europe", "Etranger-Europe"},
	{"loisirs", "Loisirs - Sport - Culture", "Loisirs-Sport-Culture"},
}

// LookupDemarche returns the démarche with this code.
func LookupDemarche(code string) (Demarche, bool) {
	for _, d := range Demarches {
		if d.Code == code {
			return d, true
		}
	}
	return Demarche{}, false
}

// DemarcheByRepScope returns the démarche FranceConnect names so.
func DemarcheByRepScope(v string) (Demarche, bool) {
	for _, d := range Demarches {
		if d.RepScope == v {
			return d, true
		}
	}
	return Demarche{}, false
}

// Label returns the French label of a code, or the code itself.
func Label(code string) string {
	if d, ok := LookupDemarche(code); ok {
		return d.Label
	}
	return code
}

// ParseDemarches checks a list of codes (comma-separated text or
// repeated form values) and returns them deduplicated, in catalogue order.
func ParseDemarches(codes []string) ([]string, error) {
	seen := map[string]bool{}
	for _, raw := range codes {
		for _, c := range strings.Split(raw, ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue
			}
			if _, ok := LookupDemarche(c); !ok {
				return nil, fmt.Errorf("unknown démarche %q (known: %s)", c, strings.Join(Codes(), ", "))
			}
			seen[c] = true
		}
	}
	var out []string
	for _, d := range Demarches {
		if seen[d.Code] {
			out = append(out, d.Code)
		}
	}
	return out, nil
}

// Codes lists every démarche code in catalogue order.
func Codes() []string {
	out := make([]string, len(Demarches))
	for i, d := range Demarches {
		out[i] = d.Code
	}
	return out
}

// Allowed tells whether every code is in the allowed set; an empty allowed
// set means the whole catalogue.
func Allowed(allowed, codes []string) bool {
	if len(allowed) == 0 {
		return true
	}
	set := map[string]bool{}
	for _, a := range allowed {
		set[a] = true
	}
	for _, c := range codes {
		if !set[c] {
			return false
		}
	}
	return true
}

// Duration is one of the four mandate lengths (SPEC §3.2).
type Duration struct {
	Code  string
	Label string
	Span  time.Duration
}

// Durations are the lengths a person can consent to.
var Durations = []Duration{
	{"1j", "1 jour", 24 * time.Hour},
	{"1m", "1 mois", 31 * 24 * time.Hour},
	{"6m", "6 mois", 182 * 24 * time.Hour},
	{"1a", "1 an", 365 * 24 * time.Hour},
}

// LookupDuration returns the duration with this code.
func LookupDuration(code string) (Duration, bool) {
	for _, d := range Durations {
		if d.Code == code {
			return d, true
		}
	}
	return Duration{}, false
}

// Paris is the time zone dates are shown in.
var Paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic("mandate: Europe/Paris: " + err.Error()) // tzdata is embedded
	}
	return loc
}()

// SortCodes sorts démarche codes in catalogue order.
func SortCodes(codes []string) {
	pos := map[string]int{}
	for i, d := range Demarches {
		pos[d.Code] = i
	}
	sort.SliceStable(codes, func(i, j int) bool { return pos[codes[i]] < pos[codes[j]] })
}
