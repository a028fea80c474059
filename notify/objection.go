package notify

import (
	"context"
	"time"

	"aidants/audit"
	"aidants/mail"
	"aidants/store"
)

// What the person's objections and the aidants' declarations of error
// tell (issue 15 items 3 and 4).

func init() {
	extra = append(extra, func(n *Notifier) {
		n.Handle(audit.UsagerObjected, n.objected)
		n.Handle(audit.ObjectionHandled, n.objectionHandled)
		n.Handle(audit.ActionErrorDeclared, n.errorDeclared)
	})
}

// SetActionMails turns the person's action messages on or off, journaled
// (usager.notifications_changed). Setting what is already set changes
// nothing and journals nothing.
func SetActionMails(ctx context.Context, log *audit.Log, usagerID string, on bool) error {
	return log.Write(ctx, func(tx *audit.Tx) error {
		var cur bool
		if err := tx.Get(&cur, `SELECT action_mails FROM usagers WHERE id = ?`, usagerID); err != nil {
			return err
		}
		if cur == on {
			return nil
		}
		if _, err := tx.Exec(`UPDATE usagers SET action_mails = ? WHERE id = ?`, on, usagerID); err != nil {
			return err
		}
		if !on {
			// The actions waiting for the hour's grouped message are
			// not told either.
			if _, err := tx.Exec(`DELETE FROM mail_actions WHERE usager_id = ?`, usagerID); err != nil {
				return err
			}
		}
		_, err := tx.Append(audit.Event{Type: audit.UsagerNotificationsChanged, Actor: audit.Actor{Kind: audit.ActorUsager, ID: usagerID},
			Usager: usagerID, Detail: map[string]any{"action_mails": on}})
		return err
	})
}

// ActionMails tells whether the person gets a message for each action,
// and whether they can get any (FranceConnect gave an address).
func ActionMails(ctx context.Context, db *store.DB, usagerID string) (on, reachable bool, err error) {
	var row struct {
		On    bool   `db:"action_mails"`
		Email string `db:"email"`
	}
	err = db.R.GetContext(ctx, &row, db.Rebind(`SELECT action_mails, COALESCE(email, '') AS email FROM usagers WHERE id = ?`), usagerID)
	return row.On, Deliverable(row.Email), err
}

type objectedData struct {
	Organisation, Aidant string
	At                   time.Time
	Withdrew             bool
	Link                 string
}

var objectedMail = mail.MustTemplate[objectedData]("objection-recue",
	`Une personne conteste une démarche faite par {{.Aidant}}`,
	`Bonjour,

Le {{datetime .At}}, une personne accompagnée par {{.Organisation}} a dit qu'une démarche faite pour elle par {{.Aidant}} n'était pas d'accord.{{if .Withdrew}} Elle a aussi retiré son mandat.{{end}}

En tant que personne référente, lisez ce qu'elle dit et indiquez ce que vous avez fait. Elle verra votre réponse dans son espace :
{{.Link}}`,
	`<h1>Une personne conteste une démarche faite par {{.Aidant}}</h1>
<p>Bonjour,</p>
<p>Le {{datetime .At}}, une personne accompagnée par {{.Organisation}} a dit qu'une démarche faite pour elle par <strong>{{.Aidant}}</strong> n'était pas d'accord.{{if .Withdrew}} Elle a aussi retiré son mandat.{{end}}</p>
<p>En tant que personne référente, lisez ce qu'elle dit et indiquez ce que vous avez fait. Elle verra votre réponse dans son espace :</p>
<p><a class="bouton" href="{{.Link}}">{{.Link}}</a></p>`)

// objected tells each active référent of the organisation, without the
// person's identity nor their words (they read them in their space).
func (n *Notifier) objected(tx *audit.Tx, _ int64, ev *audit.Event) error {
	var id string
	if err := tx.Get(&id, `SELECT id FROM objections WHERE action_index = ?`, ev.Detail["action"]); err != nil {
		return ignoreMissing(err)
	}
	d := objectedData{At: ev.Time.Time, Link: n.public + "/structure/objections/" + id}
	d.Withdrew, _ = ev.Detail["withdrew"].(bool)
	var err error
	if d.Organisation, err = OrganisationName(tx, ev.Organisation); err != nil {
		return err
	}
	if d.Aidant, err = AidantName(tx, ev.Aidant); err != nil {
		return err
	}
	c, err := objectedMail.Render(d)
	if err != nil {
		return err
	}
	var emails []string
	if err := tx.Select(&emails, `SELECT a.email FROM aidants a JOIN memberships m ON m.aidant_id = a.id
		WHERE m.organisation_id = ? AND m.is_referent AND m.active AND a.active ORDER BY a.email`, ev.Organisation); err != nil {
		return err
	}
	for _, e := range emails {
		if err := n.Queue(tx, e, c, ""); err != nil {
			return err
		}
	}
	return nil
}

type answeredData struct {
	Person       Person
	Organisation string
	Space        string
}

var answeredMail = mail.MustTemplate[answeredData]("objection-reponse",
	`{{.Organisation}} a répondu à votre signalement`,
	greeting+`

Vous aviez dit qu'une démarche faite pour vous n'était pas d'accord. {{.Organisation}} a indiqué ce qui a été fait. Lisez sa réponse dans votre espace, à côté de la démarche :
{{.Space}}`,
	`<h1>{{.Organisation}} a répondu à votre signalement</h1>
<p>Bonjour {{.Person.Name}},</p>
<p>Vous aviez dit qu'une démarche faite pour vous n'était pas d'accord. {{.Organisation}} a indiqué ce qui a été fait. Lisez sa réponse dans votre espace, à côté de la démarche :</p>
<p><a class="bouton" href="{{.Space}}">{{.Space}}</a></p>`)

func (n *Notifier) objectionHandled(tx *audit.Tx, _ int64, ev *audit.Event) error {
	p, err := PersonOf(tx, ev.Usager)
	if err != nil || !Deliverable(p.Email) {
		return ignoreMissing(err)
	}
	d := answeredData{Person: p, Space: n.public + "/mon-espace"}
	if d.Organisation, err = OrganisationName(tx, ev.Organisation); err != nil {
		return err
	}
	c, err := answeredMail.Render(d)
	if err != nil {
		return err
	}
	return n.Queue(tx, p.Email, c, "")
}

type declaredData struct {
	Person               Person
	Aidant, Organisation string
	Service, Demarche    string
	ActionAt, At         time.Time
	What, Fix            string
	Complement           bool
	Space                string
}

var declaredMail = mail.MustTemplate[declaredData]("erreur-declaree",
	`{{.Aidant}} signale une erreur sur une démarche faite pour vous`,
	greeting+`

{{.Aidant}}, de {{.Organisation}}, {{if .Complement}}complète sa déclaration d'erreur sur{{else}}signale une erreur sur{{end}} la démarche faite pour vous le {{datetime .ActionAt}} sur « {{.Service}} » ({{.Demarche}}).

Ce qui s'est mal passé :
{{.What}}

Ce qui a été fait, ou va l'être, pour le corriger :
{{.Fix}}

Vous retrouvez ce message à côté de la démarche, dans votre espace :
{{.Space}}`,
	`<h1>{{.Aidant}} signale une erreur sur une démarche faite pour vous</h1>
<p>Bonjour {{.Person.Name}},</p>
<p><strong>{{.Aidant}}</strong>, de {{.Organisation}}, {{if .Complement}}complète sa déclaration d'erreur sur{{else}}signale une erreur sur{{end}} la démarche faite pour vous le {{datetime .ActionAt}} sur « {{.Service}} » ({{.Demarche}}).</p>
<h2>Ce qui s'est mal passé</h2>
<p style="white-space:pre-line">{{.What}}</p>
<h2>Ce qui a été fait, ou va l'être, pour le corriger</h2>
<p style="white-space:pre-line">{{.Fix}}</p>
<p>Vous retrouvez ce message à côté de la démarche, dans votre espace : <a href="{{.Space}}">{{.Space}}</a></p>`)

func (n *Notifier) errorDeclared(tx *audit.Tx, _ int64, ev *audit.Event) error {
	p, err := PersonOf(tx, ev.Usager)
	if err != nil || !Deliverable(p.Email) {
		return ignoreMissing(err)
	}
	d := declaredData{Person: p, At: ev.Time.Time, Space: n.public + "/mon-espace"}
	_, d.Complement = ev.Detail["completes"]
	var action struct {
		Time store.Time `db:"time"`
	}
	if err := tx.Get(&action, `SELECT time FROM audit_events WHERE idx = ?`, ev.Detail["action"]); err != nil {
		return err
	}
	d.ActionAt = action.Time.Time
	if d.Aidant, err = AidantName(tx, ev.Aidant); err != nil {
		return err
	}
	if d.Organisation, err = OrganisationName(tx, ev.Organisation); err != nil {
		return err
	}
	if d.Service, err = ServiceName(tx, ev.Service); err != nil {
		return err
	}
	if len(ev.Demarches) > 0 {
		d.Demarche = labels(ev.Demarches)[0]
	}
	for dst, key := range map[*string]string{&d.What: "what_sha256", &d.Fix: "fix_sha256"} {
		h, _ := ev.Detail[key].(string)
		if err := tx.Get(dst, `SELECT body FROM free_texts WHERE hash = ?`, h); err != nil {
			return err
		}
	}
	c, err := declaredMail.Render(d)
	if err != nil {
		return err
	}
	return n.Queue(tx, p.Email, c, "")
}
