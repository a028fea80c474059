package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"aidants/audit"
	"aidants/store"
)

// Usager is a person signed in to their own space.
type Usager struct {
	SessionID string
	UsagerID  string
	GivenName string
	Family    string
	AuthTime  time.Time
}

// Actor is the person as the audit log names them.
func (u *Usager) Actor() audit.Actor { return audit.Actor{Kind: audit.ActorUsager, ID: u.UsagerID} }

type usagerKey struct{}

// WithUsager returns a context carrying u.
func WithUsager(ctx context.Context, u *Usager) context.Context {
	return context.WithValue(ctx, usagerKey{}, u)
}

// UsagerFrom returns the signed-in person of the request, or nil.
func UsagerFrom(ctx context.Context) *Usager {
	u, _ := ctx.Value(usagerKey{}).(*Usager)
	return u
}

// ErrUnknownUsager is a FranceConnect sign-in of a person this instance
// holds nothing about: no session is opened and nothing is stored.
var ErrUnknownUsager = errors.New("auth: no record of this person")

// BeginUsagerLogin sends the person to FranceConnect to open their space.
func (s *Service) BeginUsagerLogin(w http.ResponseWriter, r *http.Request, returnTo string) (string, error) {
	if !LocalPath(returnTo) || path.Clean(returnTo) != returnTo || (returnTo != "/mon-espace" && !strings.HasPrefix(returnTo, "/mon-espace/")) {
		returnTo = "/mon-espace"
	}
	return s.BeginFranceConnect(w, r, PurposeUsagerLogin, returnTo, "", "")
}

// FinishUsager opens the person's space from a FranceConnect answer
// (usager.login), in a session of its own, separate from any aidant's and
// with shorter timeouts. A person the instance knows nothing about gets
// ErrUnknownUsager: nothing is created for them.
func (s *Service) FinishUsager(w http.ResponseWriter, r *http.Request, a *Answer) error {
	if a.Provider != FranceConnect || a.Purpose != PurposeUsagerLogin {
		return fmt.Errorf("%w: not a FranceConnect sign-in to the person's space", ErrBadCallback)
	}
	if old, err := s.cookies.Get(r, s.cookieName(usagerCookie)); err == nil && !old.IsNew {
		if sid, _ := old.Values["sid"].(string); sid != "" {
			if err := s.endSession(r.Context(), store.Hash(sid)); err != nil {
				return err
			}
		}
	}
	var secret string
	err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
		var id string
		if err := tx.Get(&id, `SELECT id FROM usagers WHERE issuer = ? AND subject = ?`, a.Issuer, a.Subject); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrUnknownUsager
			}
			return err
		}
		var err error
		if secret, err = startSession(tx, "usager", id, "", a.AuthTime, a.MFA); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.UsagerLogin, Actor: audit.Actor{Kind: audit.ActorUsager, ID: id}, Usager: id})
		return err
	})
	if err != nil {
		return err
	}
	return s.setSessionCookie(w, r, usagerCookie, secret, a.RawIDToken)
}

// Usager returns the person of the request's space session, ended by
// logout, by the idle timeout or the absolute one (shorter than an
// aidant's).
func (s *Service) Usager(w http.ResponseWriter, r *http.Request) (*Usager, error) {
	sess, err := s.cookies.Get(r, s.cookieName(usagerCookie))
	if err != nil || sess.IsNew {
		return nil, ErrNoSession
	}
	sid, _ := sess.Values["sid"].(string)
	if sid == "" {
		return nil, ErrNoSession
	}
	id := store.Hash(sid)
	var row struct {
		PrincipalID string     `db:"principal_id"`
		AuthTime    store.Time `db:"auth_time"`
		CreatedAt   store.Time `db:"created_at"`
		LastSeen    store.Time `db:"last_seen_at"`
		Ended       store.Time `db:"ended_at"`
		GivenName   string     `db:"given_name"`
		FamilyName  string     `db:"family_name"`
	}
	err = s.db.R.GetContext(r.Context(), &row, s.db.Rebind(`SELECT s.principal_id, s.auth_time, s.created_at, s.last_seen_at,
		s.ended_at, u.given_name, u.family_name FROM sessions s JOIN usagers u ON u.id = s.principal_id
		WHERE s.id = ? AND s.kind = 'usager'`), id)
	if errors.Is(err, sql.ErrNoRows) {
		s.clearCookie(w, usagerCookie)
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("auth: load usager session: %w", err)
	}
	now := s.now()
	why := ""
	switch {
	case !row.Ended.IsZero():
		why = "logged out"
	case now.Sub(row.CreatedAt.Time) > s.cfg.UsagerAbsolute:
		why = "absolute timeout"
	case now.Sub(row.LastSeen.Time) > s.cfg.UsagerIdle:
		why = "idle timeout"
	}
	if why != "" {
		if row.Ended.IsZero() {
			if err := s.endSession(r.Context(), id); err != nil {
				return nil, err
			}
		}
		s.clearCookie(w, usagerCookie)
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
	return &Usager{SessionID: id, UsagerID: row.PrincipalID, GivenName: row.GivenName, Family: row.FamilyName, AuthTime: row.AuthTime.Time}, nil
}

// LogoutUsager ends the person's session (usager.logout), clears the
// cookie and returns FranceConnect's end-session URL ("" when none).
func (s *Service) LogoutUsager(w http.ResponseWriter, r *http.Request) (string, error) {
	u, err := s.Usager(w, r)
	var ended *SessionEndedError
	if errors.Is(err, ErrNoSession) || errors.As(err, &ended) {
		s.clearCookie(w, usagerCookie)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("auth: usager logout: %w", err)
	}
	hint := s.idTokenHint(r, usagerCookie)
	err = s.log.Write(r.Context(), func(tx *audit.Tx) error {
		if _, err := tx.Exec(`UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, store.T(tx.Now()), u.SessionID); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.UsagerLogout, Actor: u.Actor(), Usager: u.UsagerID})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("auth: usager logout: %w", err)
	}
	s.clearCookie(w, usagerCookie)
	return s.rps[FranceConnect].logoutURL(r.Context(), hint, s.cfg.UsagerPostLogoutURL, store.RandomToken(16)), nil
}
