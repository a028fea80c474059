// Package notify decides who is told what by email (SPEC §5.6, issue 15):
// the person when a mandate is signed for them, when an action is taken for
// them at a service, when a démarche or a mandate is withdrawn, when a
// mandate ends in 7 days; the aidant when their habilitation ends in 30
// days.
//
// It watches the journal (audit.Log.Watch): each message is queued in the
// outbox inside the unit that appends the event it tells of, so that a
// committed event always has its message and a rolled-back one none. The
// package mail delivers. Time-triggered messages, and the grouped message
// of the actions that came within the hour after a first one, are queued by
// Sweep with a deduplication key, so that each leaves once.
//
// A message says only what the person sees in their space, names the
// aidant by their full name and organisation, and carries no token and no
// pseudonymous id.
package notify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"strings"
	"sync"
	"time"

	"aidants/audit"
	"aidants/mail"
	"aidants/mandate"
	"aidants/store"
)

// ActionGroup is how long after an action message the next actions are
// grouped into one message.
const ActionGroup = time.Hour

// Ahead: how long before its end a mandate, and an aidant's habilitation,
// are announced.
const (
	MandateEndingAhead      = 7 * 24 * time.Hour
	HabilitationEndingAhead = 30 * 24 * time.Hour
)

// Handler queues what an event tells, inside its unit.
type Handler func(tx *audit.Tx, index int64, ev *audit.Event) error

// Notifier queues the messages of the events it watches.
type Notifier struct {
	outbox *mail.Outbox
	public string // the service's public URL, for the links
	logger *slog.Logger

	mu       sync.RWMutex
	handlers map[string]Handler
}

// New returns the notifier queueing into outbox (nil: mail is off, and
// nothing is queued). public is the service's public URL.
func New(outbox *mail.Outbox, public string, logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.Default()
	}
	n := &Notifier{outbox: outbox, public: strings.TrimSuffix(public, "/"), logger: logger, handlers: map[string]Handler{}}
	n.Handle(audit.MandateCreated, n.mandateSigned)
	n.Handle(audit.MandateUsed, n.actionTaken)
	n.Handle(audit.MandateRevoked, n.withdrawn)
	n.Handle(audit.MandateDemarcheRevoked, n.withdrawn)
	for _, f := range extra {
		f(n)
	}
	return n
}

// extra registers the handlers of the package's other files.
var extra []func(*Notifier)

// Handle sets what is queued for events of type t.
func (n *Notifier) Handle(t string, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handlers[t] = h
}

// Watch is the audit.Watcher of the notifier.
func (n *Notifier) Watch(tx *audit.Tx, index int64, ev *audit.Event) error {
	if n.outbox == nil {
		return nil
	}
	n.mu.RLock()
	h := n.handlers[ev.Type]
	n.mu.RUnlock()
	if h == nil {
		return nil
	}
	return h(tx, index, ev)
}

// On tells whether messages are sent at all (a relay, or the
// development mailbox).
func (n *Notifier) On() bool { return n != nil && n.outbox != nil }

// Public is the service's public URL, for the links of messages.
func (n *Notifier) Public() string { return n.public }

// Queue queues a message to to, unless to is not a usable address (a
// person whose FranceConnect email is missing or odd is not told, and the
// event still commits).
func (n *Notifier) Queue(tx *audit.Tx, to string, c mail.Content, dedup string) error {
	if !n.On() || !Deliverable(to) {
		return nil
	}
	return n.outbox.Queue(tx, mail.Message{To: to, Content: c, DedupKey: dedup})
}

// Deliverable tells whether addr is an address a message can go to.
func Deliverable(addr string) bool {
	if addr == "" || len(addr) > 254 {
		return false
	}
	a, err := netmail.ParseAddress(addr)
	return err == nil && a.Name == "" && a.Address == addr && strings.Contains(addr, "@")
}

// Person is the person a message goes to, as their space shows them.
type Person struct {
	ID          string `db:"id"`
	GivenName   string `db:"given_name"`
	FamilyName  string `db:"family_name"`
	Gender      string `db:"gender"`
	Email       string `db:"email"`
	ActionMails bool   `db:"action_mails"`
	LastAction  *int64 `db:"action_mail_at"`
}

// Name is "Joséphine Lefèvre".
func (p Person) Name() string { return strings.TrimSpace(p.GivenName + " " + p.FamilyName) }

// Female tells whether FranceConnect gave the gender female.
func (p Person) Female() bool { return p.Gender == "female" }

// PersonOf reads a person inside a unit.
func PersonOf(tx *audit.Tx, id string) (Person, error) {
	var p Person
	err := tx.Get(&p, `SELECT id, given_name, family_name, gender, COALESCE(email, '') AS email, action_mails, action_mail_at
		FROM usagers WHERE id = ?`, id)
	return p, err
}

// AidantName is an aidant's full name, "Camille Martin".
func AidantName(tx *audit.Tx, id string) (string, error) {
	var a struct {
		Given  string `db:"given_name"`
		Family string `db:"family_name"`
	}
	if err := tx.Get(&a, `SELECT given_name, family_name FROM aidants WHERE id = ?`, id); err != nil {
		return "", err
	}
	return strings.TrimSpace(a.Given + " " + a.Family), nil
}

// OrganisationName is an organisation's name.
func OrganisationName(tx *audit.Tx, id string) (string, error) {
	var name string
	err := tx.Get(&name, `SELECT name FROM organisations WHERE id = ?`, id)
	return name, err
}

// ServiceName is a public service's name.
func ServiceName(tx *audit.Tx, id string) (string, error) {
	var name string
	err := tx.Get(&name, `SELECT name FROM services WHERE id = ?`, id)
	return name, err
}

func labels(codes []string) []string {
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = mandate.Label(c)
	}
	return out
}

// mandateSigned tells the person that a mandate was signed for them.
func (n *Notifier) mandateSigned(tx *audit.Tx, _ int64, ev *audit.Event) error {
	p, err := PersonOf(tx, ev.Usager)
	if err != nil || !Deliverable(p.Email) {
		return ignoreMissing(err)
	}
	var m struct {
		CreatedBy string     `db:"created_by"`
		Expires   store.Time `db:"expires_at"`
		Method    string     `db:"method"`
	}
	if err := tx.Get(&m, `SELECT created_by, expires_at, method FROM mandates WHERE id = ?`, ev.Mandate); err != nil {
		return err
	}
	d := signedData{Person: p, Ref: mandate.Ref(ev.Mandate), Demarches: explained(ev.Demarches),
		Until: m.Expires.Time, At: ev.Time.Time, Space: n.public + "/mon-espace", Remote: m.Method == "remote"}
	if d.Aidant, err = AidantName(tx, m.CreatedBy); err != nil {
		return err
	}
	if d.Organisation, err = OrganisationName(tx, ev.Organisation); err != nil {
		return err
	}
	c, err := signedMail.Render(d)
	if err != nil {
		return err
	}
	return n.Queue(tx, p.Email, c, "mandate-signed:"+ev.Mandate)
}

// withdrawn tells the person that a démarche, or their whole mandate, was
// withdrawn, and by whom.
func (n *Notifier) withdrawn(tx *audit.Tx, _ int64, ev *audit.Event) error {
	p, err := PersonOf(tx, ev.Usager)
	if err != nil || !Deliverable(p.Email) {
		return ignoreMissing(err)
	}
	d := withdrawnData{Person: p, Ref: mandate.Ref(ev.Mandate), Demarches: labels(ev.Demarches), Whole: ev.Type == audit.MandateRevoked,
		At: ev.Time.Time, Space: n.public + "/mon-espace", Reason: mandate.ReasonLabel(ev.Reason)}
	if d.Organisation, err = OrganisationName(tx, ev.Organisation); err != nil {
		return err
	}
	switch ev.Actor.Kind {
	case audit.ActorUsager:
		d.ByPerson = true
	case audit.ActorAidant:
		if d.By, err = AidantName(tx, ev.Actor.ID); err != nil {
			return err
		}
		d.By += ", de " + d.Organisation
	default:
		d.By = "l'équipe qui gère le service Aidants"
	}
	c, err := withdrawnMail.Render(d)
	if err != nil {
		return err
	}
	return n.Queue(tx, p.Email, c, "")
}

// actionTaken tells the person of an action taken for them: at once when
// no action message left in the last hour; otherwise the action waits in
// mail_actions for the grouped message that Sweep queues when the hour
// ends.
func (n *Notifier) actionTaken(tx *audit.Tx, index int64, ev *audit.Event) error {
	p, err := PersonOf(tx, ev.Usager)
	if err != nil || !Deliverable(p.Email) || !p.ActionMails {
		return ignoreMissing(err)
	}
	now := tx.Now()
	demarche := ""
	if len(ev.Demarches) > 0 {
		demarche = ev.Demarches[0]
	}
	if p.LastAction != nil && now.Before(time.UnixMilli(*p.LastAction).Add(ActionGroup)) {
		_, err := tx.Exec(`INSERT INTO mail_actions (usager_id, event_index, at, aidant_id, organisation_id, service_id, demarche, due_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, index, store.T(ev.Time.Time), ev.Aidant, ev.Organisation, ev.Service, demarche,
			store.T(time.UnixMilli(*p.LastAction).Add(ActionGroup)))
		return err
	}
	a := actionRow{Index: index, At: store.T(ev.Time.Time), Aidant: ev.Aidant, Organisation: ev.Organisation, Service: ev.Service, Demarche: demarche}
	c, err := n.renderActions(tx, p, []actionRow{a})
	if err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE usagers SET action_mail_at = ? WHERE id = ?`, store.T(now), p.ID); err != nil {
		return err
	}
	return n.Queue(tx, p.Email, c, fmt.Sprintf("action:%d", index))
}

type actionRow struct {
	Index        int64      `db:"event_index"`
	At           store.Time `db:"at"`
	Aidant       string     `db:"aidant_id"`
	Organisation string     `db:"organisation_id"`
	Service      string     `db:"service_id"`
	Demarche     string     `db:"demarche"`
}

func (n *Notifier) renderActions(tx *audit.Tx, p Person, rows []actionRow) (mail.Content, error) {
	d := actionsData{Person: p, Space: n.public + "/mon-espace", Settings: n.public + "/mon-espace#courriels"}
	for _, r := range rows {
		a := actionLine{At: r.At.Time, Demarche: mandate.Label(r.Demarche),
			Object: n.public + fmt.Sprintf("/mon-espace/objection/%d", r.Index)}
		var err error
		if a.Aidant, err = AidantName(tx, r.Aidant); err != nil {
			return mail.Content{}, err
		}
		if a.Organisation, err = OrganisationName(tx, r.Organisation); err != nil {
			return mail.Content{}, err
		}
		if a.Service, err = ServiceName(tx, r.Service); err != nil {
			return mail.Content{}, err
		}
		d.Actions = append(d.Actions, a)
	}
	return actionsMail.Render(d)
}

// ignoreMissing: an event about a person or a mandate no longer on record
// (erased) tells nobody.
func ignoreMissing(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

// Run sweeps every interval until ctx ends.
func (n *Notifier) Run(ctx context.Context, log *audit.Log, interval time.Duration, wake func()) {
	if n.outbox == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		queued, err := n.Sweep(ctx, log)
		if err != nil && ctx.Err() == nil {
			n.logger.Warn("notify: sweep failed", "err", err.Error())
		}
		if queued > 0 && wake != nil {
			wake()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
