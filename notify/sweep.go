package notify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// sweepBatch bounds what one pass of each kind queues, so that a unit
// stays short; the next pass takes the rest.
const sweepBatch = 50

// Sweep queues the messages that time triggers: the grouped actions whose
// hour ended, the mandates that end within 7 days, the habilitations that
// end within 30 days. Each is queued once (a deduplication key, and rows
// that leave mail_actions with their message). It returns how many
// messages it queued.
func (n *Notifier) Sweep(ctx context.Context, log *audit.Log) (int, error) {
	if n.outbox == nil {
		return 0, nil
	}
	total := 0
	for _, pass := range []func(context.Context, *audit.Log) (int, error){n.groupedActions, n.mandatesEnding, n.habilitationsEnding} {
		for {
			k, err := pass(ctx, log)
			total += k
			if err != nil {
				return total, err
			}
			if k < sweepBatch {
				break
			}
		}
	}
	return total, nil
}

// groupedActions queues, for each person whose hour ended, one message of
// the actions that came within it.
func (n *Notifier) groupedActions(ctx context.Context, log *audit.Log) (int, error) {
	queued := 0
	err := log.Write(ctx, func(tx *audit.Tx) error {
		queued = 0
		var people []string
		if err := tx.Select(&people, `SELECT DISTINCT usager_id FROM mail_actions WHERE due_at <= ? ORDER BY usager_id LIMIT ?`,
			store.T(tx.Now()), sweepBatch); err != nil {
			return err
		}
		for _, id := range people {
			var rows []actionRow
			if err := tx.Select(&rows, `SELECT event_index, at, aidant_id, organisation_id, service_id, demarche
				FROM mail_actions WHERE usager_id = ? ORDER BY event_index`, id); err != nil {
				return err
			}
			if _, err := tx.Exec(`DELETE FROM mail_actions WHERE usager_id = ?`, id); err != nil {
				return err
			}
			p, err := PersonOf(tx, id)
			if err != nil {
				if ignoreMissing(err) == nil {
					continue
				}
				return err
			}
			queued++
			if !p.ActionMails || !Deliverable(p.Email) || len(rows) == 0 {
				continue // turned off meanwhile: the waiting actions are not told
			}
			c, err := n.renderActions(tx, p, rows)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE usagers SET action_mail_at = ? WHERE id = ?`, store.T(tx.Now()), id); err != nil {
				return err
			}
			if err := n.Queue(tx, p.Email, c, fmt.Sprintf("actions:%s:%d", id, rows[0].Index)); err != nil {
				return err
			}
		}
		return nil
	})
	return queued, err
}

// mandatesEnding tells the person of a mandate (longer than the notice)
// that ends within 7 days and still covers something.
func (n *Notifier) mandatesEnding(ctx context.Context, log *audit.Log) (int, error) {
	queued := 0
	err := log.Write(ctx, func(tx *audit.Tx) error {
		queued = 0
		now := tx.Now()
		ahead := store.T(now.Add(MandateEndingAhead))
		var ms []struct {
			ID           string     `db:"id"`
			Organisation string     `db:"organisation_id"`
			Usager       string     `db:"usager_id"`
			Expires      store.Time `db:"expires_at"`
		}
		if err := tx.Select(&ms, `SELECT m.id, m.organisation_id, m.usager_id, m.expires_at FROM mandates m
			WHERE m.revoked_at IS NULL AND m.expires_at > ? AND m.expires_at <= ? AND m.expires_at - m.created_at > ?
			AND EXISTS (SELECT 1 FROM mandate_demarches d WHERE d.mandate_id = m.id AND d.revoked_at IS NULL)
			AND NOT EXISTS (SELECT 1 FROM mail_sweeps s WHERE s.dedup_key = 'mandate-ending:' || m.id)
			ORDER BY m.expires_at LIMIT ?`, store.T(now), ahead, MandateEndingAhead.Milliseconds(), sweepBatch); err != nil {
			return err
		}
		for _, m := range ms {
			queued++
			key := "mandate-ending:" + m.ID
			if err := spent(tx, key); err != nil {
				return err
			}
			p, err := PersonOf(tx, m.Usager)
			if err != nil || !Deliverable(p.Email) {
				if err = ignoreMissing(err); err != nil {
					return err
				}
				continue
			}
			var codes []string
			if err := tx.Select(&codes, `SELECT demarche FROM mandate_demarches WHERE mandate_id = ? AND revoked_at IS NULL ORDER BY demarche`, m.ID); err != nil {
				return err
			}
			d := endingData{Person: p, Ref: mandate.Ref(m.ID), Demarches: labels(codes), Until: m.Expires.Time, Space: n.public + "/mon-espace"}
			if d.Organisation, err = OrganisationName(tx, m.Organisation); err != nil {
				return err
			}
			c, err := endingMail.Render(d)
			if err != nil {
				return err
			}
			if err := n.Queue(tx, p.Email, c, key); err != nil {
				return err
			}
		}
		return nil
	})
	return queued, err
}

// habilitationsEnding tells an active aidant whose habilitation ends within
// 30 days.
func (n *Notifier) habilitationsEnding(ctx context.Context, log *audit.Log) (int, error) {
	queued := 0
	err := log.Write(ctx, func(tx *audit.Tx) error {
		queued = 0
		today := tx.Now().In(mandate.Paris)
		from, to := today.Format(time.DateOnly), today.Add(HabilitationEndingAhead).Format(time.DateOnly)
		var as []struct {
			ID     string `db:"id"`
			Email  string `db:"email"`
			Given  string `db:"given_name"`
			Family string `db:"family_name"`
			Until  string `db:"habilitated_until"`
		}
		if err := tx.Select(&as, `SELECT a.id, a.email, a.given_name, a.family_name, a.habilitated_until FROM aidants a
			WHERE a.active AND a.habilitated_until >= ? AND a.habilitated_until <= ?
			AND NOT EXISTS (SELECT 1 FROM mail_sweeps s WHERE s.dedup_key = 'habilitation-ending:' || a.id || ':' || a.habilitated_until)
			ORDER BY a.habilitated_until, a.id LIMIT ?`, from, to, sweepBatch); err != nil {
			return err
		}
		for _, a := range as {
			queued++
			key := "habilitation-ending:" + a.ID + ":" + a.Until
			if err := spent(tx, key); err != nil {
				return err
			}
			until, err := time.ParseInLocation(time.DateOnly, a.Until, mandate.Paris)
			if err != nil {
				continue
			}
			c, err := habilitationMail.Render(habilitationData{Name: strings.TrimSpace(a.Given + " " + a.Family), Until: until, Site: n.public})
			if err != nil {
				return err
			}
			if err := n.Queue(tx, a.Email, c, key); err != nil {
				return err
			}
		}
		return nil
	})
	return queued, err
}

// spent records that a time-triggered message was decided, so that no
// later sweep decides it again, whether or not it could be queued (a
// person without email) and after the outbox forgot it.
func spent(tx *audit.Tx, key string) error {
	_, err := tx.Exec(`INSERT INTO mail_sweeps (dedup_key, at) VALUES (?, ?) ON CONFLICT (dedup_key) DO NOTHING`, key, store.T(tx.Now()))
	return err
}
