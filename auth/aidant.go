package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"aidants/audit"
	"aidants/org"
	"aidants/store"
)

// Purposes of aidant sign-ins.
const (
	PurposeAidantLogin  = "aidant_login"
	PurposeAidantStepUp = "aidant_step_up"
)

// BeginAidantLogin starts a sign-in at the aidants' provider.
func (s *Service) BeginAidantLogin(w http.ResponseWriter, r *http.Request, returnTo string) (string, error) {
	return s.Begin(w, r, Request{Provider: Aidants, Purpose: PurposeAidantLogin, ReturnTo: returnTo})
}

// BeginStepUp asks the signed-in aidant to authenticate again
// (prompt=login, max_age=0) before a sensitive action.
func (s *Service) BeginStepUp(w http.ResponseWriter, r *http.Request, returnTo string) (string, error) {
	return s.Begin(w, r, Request{Provider: Aidants, Purpose: PurposeAidantStepUp, ReturnTo: returnTo, Prompt: "login", MaxAge: 0})
}

// StepUpMaxAge is the configured age beyond which sensitive actions need a
// new authentication.
func (s *Service) StepUpMaxAge() time.Duration { return s.cfg.StepUpMaxAge }

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// FinishAidant completes a callback of the aidants' provider: a login
// (a new session, aidant.login) or a step-up of the current session
// (aidant.step_up). Refusals are audited (aidant.login_refused) and
// returned as ErrMFARequired or *RefusedError.
func (s *Service) FinishAidant(w http.ResponseWriter, r *http.Request, a *Answer) error {
	if a.Provider != Aidants {
		return fmt.Errorf("%w: not an aidants' provider answer", ErrBadCallback)
	}
	p := s.rps[Aidants]
	if p.cfg.RequireMFA && !a.MFA {
		// Named when the records know them, so that their référent sees
		// why they cannot sign in; nothing is bound.
		id, err := s.whoWouldSignIn(r.Context(), a)
		if err != nil {
			return err
		}
		if err := s.refuse(r.Context(), id, "mfa_required"); err != nil {
			return err
		}
		err = p.mfaRefusal(a.Claims, ErrMFARequired)
		s.logRefusal(err)
		return err
	}
	switch a.Purpose {
	case PurposeAidantLogin:
		return s.login(w, r, a)
	case PurposeAidantStepUp:
		return s.stepUp(w, r, a)
	}
	return fmt.Errorf("%w: purpose %q", ErrBadCallback, a.Purpose)
}

// whoWouldSignIn finds the aidant an answer names (their identity, or a
// pending aidant's verified email) without binding anyone: "" when no
// one.
func (s *Service) whoWouldSignIn(ctx context.Context, a *Answer) (string, error) {
	email := a.Claim("email")
	if verified, _ := emailVerified(a.Claims); s.rps[Aidants].cfg.MatchEmailRequiresVerified && !verified {
		email = ""
	}
	var id string
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		aid, err := org.Resolve(tx, org.Identity{Issuer: a.Issuer, Subject: a.Subject, Email: email})
		if errors.Is(err, org.ErrNotFound) {
			return errRollback
		}
		if err != nil {
			return err
		}
		id = aid.ID
		return errRollback // a pending aidant's binding is undone
	})
	if err != nil && !errors.Is(err, errRollback) {
		return "", fmt.Errorf("auth: find the aidant: %w", err)
	}
	return id, nil
}

var errRollback = errors.New("roll back")

func (s *Service) login(w http.ResponseWriter, r *http.Request, a *Answer) error {
	// A previous session of this browser ends here: one person, one session.
	if old, err := s.cookies.Get(r, s.cookieName(aidantCookie)); err == nil && !old.IsNew {
		if sid, _ := old.Values["sid"].(string); sid != "" {
			if err := s.endSession(r.Context(), store.Hash(sid)); err != nil {
				return err
			}
		}
	}
	// A pending aidant is found by email only when the provider vouches
	// for the address: otherwise whoever could claim it at the provider
	// would get the account.
	email := a.Claim("email")
	verified, said := emailVerified(a.Claims)
	if s.rps[Aidants].cfg.MatchEmailRequiresVerified && !verified {
		email = ""
	}
	var secret, refusedAidant string
	var refused *RefusedError
	err := s.log.Write(r.Context(), func(tx *audit.Tx) error {
		aid, err := org.Resolve(tx, org.Identity{Issuer: a.Issuer, Subject: a.Subject, Email: email})
		if errors.Is(err, org.ErrNotFound) {
			refused = &RefusedError{Reason: ReasonUnknown}
			return refused
		}
		if err != nil {
			return err
		}
		ms, err := org.UsableMemberships(tx, aid.ID)
		if err != nil {
			return err
		}
		switch {
		case !aid.Active:
			refused = &RefusedError{Reason: ReasonDisabled}
		case !aid.Habilitated(tx.Now()):
			refused = &RefusedError{Reason: ReasonNotHabilitated}
		case len(ms) == 0:
			refused = &RefusedError{Reason: ReasonNoOrganisation}
		}
		if refused != nil {
			refusedAidant = aid.ID
			return refused
		}
		// The first usable organisation is current; an aidant of several
		// can switch from the dashboard.
		current := ms[0]
		secret, err = startSession(tx, "aidant", aid.ID, current.OrganisationID, a.AuthTime, a.MFA)
		if err != nil {
			return err
		}
		if aid.LastRefusal != "" {
			if _, err := tx.Exec(`UPDATE aidants SET last_refusal = NULL WHERE id = ?`, aid.ID); err != nil {
				return err
			}
		}
		_, err = tx.Append(audit.Event{Type: audit.AidantLogin, Actor: audit.Actor{Kind: audit.ActorAidant, ID: aid.ID},
			Aidant: aid.ID, Organisation: current.OrganisationID, Detail: map[string]any{"mfa": a.MFA}})
		return err
	})
	if refused != nil && refused.Reason == ReasonUnknown {
		// Why no pending aidant could be found, in claim names and the
		// value of email_verified: never the address.
		attrs := []any{"provider", string(Aidants), "reason", ReasonUnknown}
		switch {
		case a.Claim("email") == "":
			attrs = append(attrs, "missing", []string{"email"})
		case email == "":
			attrs = append(attrs, "email_verified", said, "want", "email_verified true to match a pending aidant by email")
		}
		s.logger.Info("sign-in refused", attrs...)
	}
	if refused != nil {
		// The refusal unit rolled back (nothing bound, no session); its
		// event is written on its own, naming the aidant when known. The
		// id comes from the unit: a pending aidant's binding rolled back
		// too, so a lookup by (issuer, subject) would not find them.
		if err := s.refuse(r.Context(), refusedAidant, refused.Reason); err != nil {
			return err
		}
		return refused
	}
	if err != nil {
		return fmt.Errorf("auth: login: %w", err)
	}
	return s.setSessionCookie(w, r, aidantCookie, secret, a.RawIDToken)
}

func (s *Service) stepUp(w http.ResponseWriter, r *http.Request, a *Answer) error {
	cur, err := s.Aidant(w, r)
	if err != nil {
		return err
	}
	if s.now().Sub(a.AuthTime) > 5*time.Minute {
		return fmt.Errorf("%w: step-up answer with an old authentication", ErrBadToken)
	}
	aid, err := s.dir.Aidant(r.Context(), cur.AidantID)
	if err != nil {
		return err
	}
	if aid.Issuer != a.Issuer || aid.Subject != a.Subject {
		// Someone else authenticated on this aidant's screen.
		if err := s.refuse(r.Context(), cur.AidantID, ReasonOtherPerson); err != nil {
			return err
		}
		return &RefusedError{Reason: ReasonOtherPerson}
	}
	return s.log.Write(r.Context(), func(tx *audit.Tx) error {
		// The session now stands on this authentication: its time and
		// whether it used a second factor.
		if _, err := tx.Exec(`UPDATE sessions SET auth_time = ?, mfa = ? WHERE id = ?`, store.T(a.AuthTime), a.MFA, cur.SessionID); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.AidantStepUp, Actor: cur.Actor(), Aidant: cur.AidantID, Organisation: cur.OrganisationID})
		return err
	})
}

// refuse writes aidant.login_refused, for a refusal the records decided
// (never for a directory that could not be read). The aidant is named by
// id when known; an unknown account is named by nothing at all. A refusal
// that cannot be journaled is answered as the server's error.
func (s *Service) refuse(ctx context.Context, aidantID, reason string) error {
	actor := audit.Actor{Kind: audit.ActorAidant, ID: "unknown"}
	if aidantID != "" {
		actor.ID = aidantID
	}
	err := s.log.Write(ctx, func(tx *audit.Tx) error {
		if aidantID != "" {
			if _, err := tx.Exec(`UPDATE aidants SET last_refusal = ? WHERE id = ?`, reason, aidantID); err != nil {
				return err
			}
		}
		_, err := tx.Append(audit.Event{Type: audit.AidantLoginRefused, Actor: actor, Aidant: aidantID, Reason: reason})
		return err
	})
	if err != nil {
		return fmt.Errorf("auth: journal a refused sign-in: %w", err)
	}
	return nil
}

// LogoutAidant ends the session (aidant.logout), clears the cookie and
// returns the provider's end-session URL to send the browser to ("" when
// there is none or no session).
func (s *Service) LogoutAidant(w http.ResponseWriter, r *http.Request) (string, error) {
	p, err := s.Aidant(w, r)
	var ended *SessionEndedError
	if errors.Is(err, ErrNoSession) || errors.As(err, &ended) {
		s.clearCookie(w, aidantCookie)
		return "", nil
	}
	if err != nil {
		// The session could not be read, so it is not ended: say so
		// rather than show a logout that did not happen.
		return "", fmt.Errorf("auth: logout: %w", err)
	}
	hint := s.idTokenHint(r, aidantCookie)
	err = s.log.Write(r.Context(), func(tx *audit.Tx) error {
		if _, err := tx.Exec(`UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, store.T(tx.Now()), p.SessionID); err != nil {
			return err
		}
		_, err := tx.Append(audit.Event{Type: audit.AidantLogout, Actor: p.Actor(), Aidant: p.AidantID, Organisation: p.OrganisationID})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("auth: logout: %w", err)
	}
	s.clearCookie(w, aidantCookie)
	return s.ProviderLogoutURL(r.Context(), Aidants, hint), nil
}

// ErrNotMember is a switch to an organisation the aidant cannot work in.
var ErrNotMember = errors.New("auth: not a usable membership of this aidant")

// SwitchOrganisation makes orgID the current organisation of the aidant's
// session (aidant.organisation_switched): every list and action follows
// it from the next request.
func (s *Service) SwitchOrganisation(ctx context.Context, p *Principal, orgID string) error {
	return s.log.Write(ctx, func(tx *audit.Tx) error {
		ms, err := org.UsableMemberships(tx, p.AidantID)
		if err != nil {
			return err
		}
		ok := false
		for _, m := range ms {
			ok = ok || m.OrganisationID == orgID
		}
		if !ok {
			return ErrNotMember
		}
		if _, err := tx.Exec(`UPDATE sessions SET organisation_id = ? WHERE id = ? AND ended_at IS NULL`, orgID, p.SessionID); err != nil {
			return err
		}
		_, err = tx.Append(audit.Event{Type: audit.AidantOrganisationSwitch, Actor: p.Actor(), Aidant: p.AidantID, Organisation: orgID,
			Detail: map[string]any{"from": p.OrganisationID}})
		return err
	})
}

// Organisations lists the organisations the aidant can work in.
func (s *Service) Organisations(ctx context.Context, aidantID string) ([]org.Membership, error) {
	ms, err := s.dir.Memberships(ctx, aidantID)
	if err != nil {
		return nil, err
	}
	out := ms[:0]
	for _, m := range ms {
		if m.Usable() {
			out = append(out, m)
		}
	}
	return out, nil
}
