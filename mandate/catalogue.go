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

	"aidants/audit"
)

// Demarche is a category of online procedures (SPEC §3.1).
type Demarche struct {
	Code     string // stable code stored in mandates and events
	Label    string // French label shown to people
	RepScope string // the value FranceConnect uses in rep_scope
	// Description says in one line what the category covers, and
	// Examples three démarches it holds, in words people use.
	Description string
	Examples    []string
}

// Demarches is the catalogue, in display order.
var Demarches = []Demarche{
	{"papiers", "Papiers - Citoyenneté - Élections", "Papier-Citoyenneté-Elections",
		"Les papiers d'identité et la vie de citoyen.",
		[]string{"demander une carte d'identité ou un passeport", "s'inscrire sur les listes électorales", "déclarer la perte ou le vol de ses papiers"}},
	{"famille", "Famille - Scolarité", "Famille-Scolarité",
		"La vie de famille, les enfants et l'école.",
		[]string{"demander une aide de la CAF pour un enfant", "inscrire un enfant à la cantine", "demander une bourse de collège ou de lycée"}},
	{"social", "Social - Santé", "Social-Santé",
		"La santé et les aides sociales.",
		[]string{"demander la complémentaire santé solidaire", "suivre ses remboursements de l'Assurance maladie", "demander le RSA ou la prime d'activité"}},
	{"travail", "Travail - Formation", "Travail-Formation",
		"L'emploi, le chômage et la formation.",
		[]string{"s'inscrire à France Travail", "déclarer sa situation chaque mois", "consulter son compte personnel de formation"}},
	{"logement", "Logement", "Logement",
		"Se loger et les aides au logement.",
		[]string{"demander une aide au logement", "faire une demande de logement social", "demander le chèque énergie"}},
	{"transports", "Transports - Mobilité", "Transports-Mobilité",
		"La voiture, le permis et les transports.",
		[]string{"demander une carte grise", "payer une amende", "demander un duplicata du permis de conduire"}},
	{"argent", "Argent - Impôts - Consommation", "Argent-Impots-Consommation",
		"Les impôts, l'argent et les achats.",
		[]string{"déclarer ses revenus", "payer un impôt ou demander un délai", "signaler un litige avec un commerçant"}},
	{"justice", "Justice", "Justice",
		"Les droits et la justice.",
		[]string{"demander l'aide juridictionnelle", "porter plainte en ligne pour une escroquerie", "demander un extrait de casier judiciaire"}},
	{"etranger", "Étranger - Europe", "Etranger-Europe",
		"Le séjour en France et les démarches à l'étranger.",
		[]string{"demander ou renouveler un titre de séjour", "demander la nationalité française", "faire une démarche auprès d'un consulat"}},
	{"loisirs", "Loisirs - Sport - Culture", "Loisirs-Sport-Culture",
		"Les loisirs, le sport et la culture.",
		[]string{"demander le pass Sport", "utiliser le pass Culture", "obtenir un permis de chasser ou de pêche"}},
}

// Explain is the one-line description followed by the examples, as a
// hint under the démarche's name.
func (d Demarche) Explain() string {
	return d.Description + " Par exemple : " + strings.Join(d.Examples, " ; ") + "."
}

// Explain returns the explanation of a démarche code, or "".
func Explain(code string) string {
	if d, ok := LookupDemarche(code); ok {
		return d.Explain()
	}
	return ""
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

// Reason is why a mandate or a démarche is withdrawn, or an aidant
// disabled: a code, journaled, and its French label.
type Reason struct {
	Code  string
	Label string
}

// ReasonOther asks for the free text that says it.
const ReasonOther = "autre"

// ReasonByPerson is the reason of a withdrawal made by the person from
// their space; ReasonSuperseded, of a démarche taken over by a new mandate.
const (
	ReasonByPerson   = "retrait_personne"
	ReasonSuperseded = "superseded"
)

// RevokeReasons are the reasons an aidant chooses among to withdraw a
// mandate or a démarche.
var RevokeReasons = []Reason{
	{"demande_personne", "La personne l'a demandé"},
	{"plus_necessaire", "La personne n'en a plus besoin"},
	{"erreur", "Le mandat contient une erreur"},
	{ReasonOther, "Une autre raison (précisez-la)"},
}

var reasonLabels = func() map[string]string {
	m := map[string]string{ReasonByPerson: "Retiré par la personne depuis son espace", ReasonSuperseded: "Remplacé par un nouveau mandat",
		ReasonOther: "Une autre raison"}
	for _, r := range RevokeReasons {
		if r.Code != ReasonOther {
			m[r.Code] = r.Label
		}
	}
	return m
}()

// ReasonLabel is the French label of a reason code; a reason stored as
// text before codes existed is returned as it is.
func ReasonLabel(code string) string {
	if l, ok := reasonLabels[code]; ok {
		return l
	}
	return code
}

// validReason tells whether code is a reason by may give.
func validReason(by audit.Actor, code string) bool {
	if by.Kind == audit.ActorUsager {
		return code == ReasonByPerson
	}
	for _, r := range RevokeReasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

// Duration is one of the four mandate lengths (SPEC §3.2).
type Duration struct {
	Code  string
	Label string
	Days  int // calendar days in Europe/Paris
}

// Durations are the lengths a person can consent to.
var Durations = []Duration{
	{"1j", "1 jour", 1},
	{"1m", "1 mois", 31},
	{"6m", "6 mois", 182},
	{"1a", "1 an", 365},
}

// Until is when a mandate of this length signed at start ends: the same
// time of day in Paris, Days calendar days later, so that the end does not
// move by an hour across a change of summer time (SPEC §3.2).
func (d Duration) Until(start time.Time) time.Time {
	return start.In(Paris).AddDate(0, 0, d.Days).UTC()
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

var months = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}

// FrenchDay writes the day of t as "12 mars 2026" ("1er mars"), in t's
// own location.
func FrenchDay(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := fmt.Sprint(t.Day())
	if t.Day() == 1 {
		d = "1er"
	}
	return fmt.Sprintf("%s %s %d", d, months[t.Month()-1], t.Year())
}

// FrenchDate writes "12 mars 2026" in Paris time.
func FrenchDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FrenchDay(t.In(Paris))
}

// FrenchDateTime writes "12 mars 2026 à 14 h 05" in Paris time.
func FrenchDateTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	p := t.In(Paris)
	return fmt.Sprintf("%s à %d h %02d", FrenchDay(p), p.Hour(), p.Minute())
}

// Ref is a mandate's reference as people read and say it: eight
// characters of its id in two groups ("7IH4-NHJ5"). The whole id is for
// machines and verifiers.
func Ref(id string) string {
	body := strings.ToUpper(strings.TrimPrefix(id, "man_"))
	if len(body) < 16 {
		return body
	}
	return body[8:12] + "-" + body[12:16]
}

// SortCodes sorts démarche codes in catalogue order.
func SortCodes(codes []string) {
	pos := map[string]int{}
	for i, d := range Demarches {
		pos[d.Code] = i
	}
	sort.SliceStable(codes, func(i, j int) bool { return pos[codes[i]] < pos[codes[j]] })
}

// FrenchMonth writes the month of t as "décembre 2026", in Paris time.
func FrenchMonth(t time.Time) string {
	p := t.In(Paris)
	return fmt.Sprintf("%s %d", months[p.Month()-1], p.Year())
}
