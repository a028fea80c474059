package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"aidants/audit"
	"aidants/mandate"
	"aidants/store"
)

// Principal is a signed-in aidant, as of this request.
type Principal struct {
	SessionID        string // hash of the cookie secret, the sessions row id
	AidantID         string
	GivenName        string
	FamilyName       string
	Email            string
	OrganisationID   string
	OrganisationName string
	SIRET            string
	IsAidant         bool
	IsReferent       bool
	AuthTime         time.Time
	MFA              bool // that authentication used a second factor (the provider's acr follows it)
	CreatedAt        time.Time
}

// Actor is the principal as the audit log names it.
func (p *Principal) Actor() audit.Actor { return audit.Actor{Kind: audit.ActorAidant, ID: p.AidantID} }

// FreshFor tells whether the authentication is younger than maxAge.
func (p *Principal) FreshFor(maxAge time.Duration, now time.Time) bool {
	return now.Sub(p.AuthTime) <= maxAge
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the signed-in aidant of the request, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// touchEvery bounds how often last_seen_at is written: idle timeouts are
// counted in minutes, and a write per click would be waste.
const touchEvery = time.Minute

// SessionEndedError says why a session that existed no longer works.
type SessionEndedError struct{ Why string }

func (e *SessionEndedError) Error() string { return "auth: session ended: " + e.Why }

// Aidant returns the principal of the request's aidant session. The
// server-side record decides: a session logged out, idle or too old, of a
// disabled or no-longer-habilitated aidant, or of a membership that ended,
// is ended here (ErrNoSession when there is no session at all, a
// *SessionEndedError otherwise).
func (s *Service) Aidant(w http.ResponseWriter, r *http.Request) (*Principal, error) {
	sess, err := s.cookies.Get(r, s.cookieName(aidantCookie))
	if err != nil || sess.IsNew {
		return nil, ErrNoSession
	}
	sid, _ := sess.Values["sid"].(string)
	if sid == "" {
		return nil, ErrNoSession
	}
	id := store.Hash(sid)
	var row struct {
		PrincipalID      string         `db:"principal_id"`
		OrganisationID   sql.NullString `db:"organisation_id"`
		AuthTime         store.Time     `db:"auth_time"`
		MFA              bool           `db:"mfa"`
		CreatedAt        store.Time     `db:"created_at"`
		LastSeen         store.Time     `db:"last_seen_at"`
		Ended            store.Time     `db:"ended_at"`
		GivenName        string         `db:"given_name"`
		FamilyName       string         `db:"family_name"`
		Email            string         `db:"email"`
		AidantActive     bool           `db:"aidant_active"`
		HabilitatedUntil string         `db:"habilitated_until"`
		IsAidant         sql.NullBool   `db:"is_aidant"`
		IsReferent       sql.NullBool   `db:"is_referent"`
		MemberActive     sql.NullBool   `db:"member_active"`
		OrgName          sql.NullString `db:"org_name"`
		OrgSIRET         sql.NullString `db:"org_siret"`
		OrgActive        sql.NullBool   `db:"org_active"`
	}
	err = s.db.R.GetContext(r.Context(), &row, s.db.Rebind(`SELECT s.principal_id, s.organisation_id, s.auth_time, s.mfa, s.created_at,
		s.last_seen_at, s.ended_at, a.given_name, a.family_name, a.email, a.active AS aidant_active, a.habilitated_until,
		m.is_aidant, m.is_referent, m.active AS member_active, o.name AS org_name, o.siret AS org_siret, o.active AS org_active
		FROM sessions s JOIN aidants a ON a.id = s.principal_id
		LEFT JOIN memberships m ON m.aidant_id = s.principal_id AND m.organisation_id = s.organisation_id
		LEFT JOIN organisations o ON o.id = s.organisation_id
		WHERE s.id = ? AND s.kind = 'aidant'`), id)
	if errors.Is(err, sql.ErrNoRows) {
		s.clearCookie(w, aidantCookie)
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("auth: load session: %w", err)
	}
	now := s.now()
	why := ""
	switch {
	case !row.Ended.IsZero():
		why = "logged out"
	case now.Sub(row.CreatedAt.Time) > s.cfg.AbsoluteTimeout:
		why = "absolute timeout"
	case now.Sub(row.LastSeen.Time) > s.cfg.IdleTimeout:
		why = "idle timeout"
	case !row.AidantActive:
		why = "aidant disabled"
	case row.HabilitatedUntil < now.In(mandate.Paris).Format(time.DateOnly):
		why = "habilitation ended"
	case !row.OrganisationID.Valid || !row.MemberActive.Bool || !row.OrgActive.Bool || !(row.IsAidant.Bool || row.IsReferent.Bool):
		why = "membership ended"
	}
	if why != "" {
		if row.Ended.IsZero() {
			if err := s.endSession(r.Context(), id); err != nil {
				return nil, err
			}
		}
		s.clearCookie(w, aidantCookie)
		return nil, &SessionEndedError{Why: why}
	}
	if now.Sub(row.LastSeen.Time) > touchEvery {
		err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
			_, err := tx.Exec(`UPDATE sessions SET last_seen_at = ? WHERE id = ? AND ended_at IS NULL`, store.T(now), id)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("auth: touch session: %w", err)
		}
	}
	return &Principal{
		SessionID: id, AidantID: row.PrincipalID, GivenName: row.GivenName, FamilyName: row.FamilyName, Email: row.Email,
		OrganisationID: row.OrganisationID.String, OrganisationName: row.OrgName.String, SIRET: row.OrgSIRET.String,
		IsAidant: row.IsAidant.Bool, IsReferent: row.IsReferent.Bool, AuthTime: row.AuthTime.Time, MFA: row.MFA, CreatedAt: row.CreatedAt.Time,
	}, nil
}

func (s *Service) endSession(ctx context.Context, id string) error {
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, store.T(tx.Now()), id)
		return err
	})
}

// startSession records a new session inside the login's transaction and
// returns the secret for the cookie. A new secret at every sign-in: a
// session id planted before login is worth nothing after it. mfa records
// whether the authentication used a second factor.
func startSession(tx *audit.Tx, kind, principalID, orgID string, authTime time.Time, mfa bool) (string, error) {
	secret := store.RandomToken(32)
	now := store.T(tx.Now())
	var org any
	if orgID != "" {
		org = orgID
	}
	_, err := tx.Exec(`INSERT INTO sessions (id, kind, principal_id, organisation_id, auth_time, mfa, created_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, store.Hash(secret), kind, principalID, org, store.T(authTime), mfa, now, now)
	return secret, err
}

// setSessionCookie writes a fresh session cookie holding the secret and
// the provider's ID token (kept only as the logout hint).
func (s *Service) setSessionCookie(w http.ResponseWriter, r *http.Request, base, secret, idToken string) error {
	sess, err := s.cookies.New(r, s.cookieName(base))
	if sess == nil {
		return fmt.Errorf("auth: new session: %w", err)
	}
	sess.Values = map[any]any{"sid": secret, "idt": idToken}
	return sess.Save(r, w)
}

// idTokenHint returns the ID token kept in the session cookie.
func (s *Service) idTokenHint(r *http.Request, base string) string {
	sess, err := s.cookies.Get(r, s.cookieName(base))
	if err != nil {
		return ""
	}
	v, _ := sess.Values["idt"].(string)
	return v
}

func (s *Service) clearCookie(w http.ResponseWriter, base string) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(base), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
}
