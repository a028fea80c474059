// Package audit owns the journal of everything done in the service: the
// events, the single writer that commits them atomically with the state
// changes they record, the RFC 6962 Merkle tree built over them with
// golang.org/x/mod/sumdb/tlog, the signed checkpoints, the tiles mirrors
// read, the proofs served to third parties, the offline verification, and
// what keeps the journal honest against its own operator (SPEC §6.1): each
// event's public entry is a salted commitment, every queryable column is
// checked against the hashed body, and a database behind the checkpoint
// kept outside it (CheckState) is never appended to.
//
// Log.Write is the database's only write path in a serving process: every
// change of state is a unit run inside the writer's transaction, which is
// what makes each event atomic with the change it records. A unit must not
// call Write itself (it would wait for its own batch). The one other write
// is StartOrigin, an offline operator step.
//
// Events name people by pseudonymous ids only (aidant id, usager id), never
// by name, birthdate or email, so that a person's identity can be erased
// from its own table without breaking the tree. No token, code, secret or
// cookie ever enters an event.
//
// audit does not import the domain packages: it records ids as plain
// strings, so old records survive refactors.
package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Actor kinds.
const (
	ActorAidant   = "aidant"
	ActorUsager   = "usager"
	ActorService  = "service"
	ActorAuditor  = "auditor"
	ActorOperator = "operator"
	ActorSystem   = "system"
)

// Event types (SPEC §6).
const (
	AidantLogin               = "aidant.login"
	AidantLoginRefused        = "aidant.login_refused"
	AidantLogout              = "aidant.logout"
	AidantOrganisationSwitch  = "aidant.organisation_switched"
	AidantStepUp              = "aidant.step_up"
	UsagerIdentified          = "usager.identified"
	UsagerLogin               = "usager.login"
	UsagerLogout              = "usager.logout"
	MandateDraftCreated       = "mandate.draft_created"
	MandateConsentLinkCreated = "mandate.consent_link_created"
	MandateConsentLinkSent    = "mandate.consent_link_sent"
	MandateConsentGiven       = "mandate.consent_given"
	MandateConsentRefused     = "mandate.consent_refused"
	MandateCreated            = "mandate.created"
	MandateRenewed            = "mandate.renewed"
	MandateDemarcheRevoked    = "mandate.demarche_revoked"
	MandateRevoked            = "mandate.revoked"
	MandateSuperseded         = "mandate.superseded"
	MandateUsed               = "mandate.used"
	TokenIssued               = "token.issued"
	AccessDenied              = "access.denied"
	AuditQueried              = "audit.queried"
	AuditExported             = "audit.exported"
	OrgCreated                = "org.created"
	OrgUpdated                = "org.updated"
	AidantCreated             = "aidant.created"
	AidantUpdated             = "aidant.updated"
	AidantDisabled            = "aidant.disabled"
	AidantHabilitationRenewed = "aidant.habilitation_renewed"
	ServiceRegistered         = "service.registered"
	ServiceUpdated            = "service.updated"
	AuditorRegistered         = "auditor.registered"
	KeysRotated               = "keys.rotated"
	AuditOriginStarted        = "audit.origin_started"
	AbuseThrottled            = "abuse.throttled"
	// UsagerNotificationsChanged: the person turned the action messages
	// off or on (Detail action_mails).
	UsagerNotificationsChanged = "usager.notifications_changed"
	// UsagerObjected: the person says an action was not what they agreed
	// to (Detail action: its index; the free text's hash).
	UsagerObjected = "usager.objected"
	// ObjectionHandled: a référent records what was done about it.
	ObjectionHandled = "objection.handled"
	// ActionErrorDeclared: an aidant declares an error on an action they
	// took (Detail action, what and fix hashes, completes).
	ActionErrorDeclared = "action.error_declared"
	// TextErased: a free text (a reason, an objection) was erased; the
	// events that carry its hash stay.
	TextErased = "text.erased"
)

// Types lists every event type, sorted.
var Types = func() []string {
	t := []string{AidantLogin, AidantLoginRefused, AidantLogout, AidantOrganisationSwitch, AidantStepUp,
		UsagerIdentified, UsagerLogin, UsagerLogout, MandateDraftCreated, MandateConsentLinkCreated, MandateConsentLinkSent,
		MandateConsentGiven, MandateConsentRefused, MandateCreated, MandateRenewed, MandateDemarcheRevoked,
		MandateRevoked, MandateSuperseded, MandateUsed, TokenIssued, AccessDenied, AuditQueried, AuditExported,
		OrgCreated, OrgUpdated, AidantCreated, AidantUpdated, AidantDisabled, AidantHabilitationRenewed,
		ServiceRegistered, ServiceUpdated, AuditorRegistered, KeysRotated, AuditOriginStarted, AbuseThrottled,
		TextErased, UsagerNotificationsChanged, UsagerObjected, ObjectionHandled, ActionErrorDeclared}
	sort.Strings(t)
	return t
}()

// KnownType tells whether t is one of Types.
func KnownType(t string) bool {
	i := sort.SearchStrings(Types, t)
	return i < len(Types) && Types[i] == t
}

// Actor is who did the action.
type Actor struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// Event is one entry of the journal. Its canonical JSON form (keys sorted,
// no HTML escaping, no insignificant space) is the leaf data of the tree.
//
// The fields are declared in the alphabetical order of their JSON names,
// which is what makes encoding/json produce sorted keys.
type Event struct {
	Actor        Actor          `json:"actor"`
	Aidant       string         `json:"aidant,omitempty"`
	Demarches    []string       `json:"demarches,omitempty"`
	Detail       map[string]any `json:"detail,omitempty"`
	Mandate      string         `json:"mandate,omitempty"`
	Organisation string         `json:"organisation,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	Service      string         `json:"service,omitempty"`
	Time         Time           `json:"time"`
	Type         string         `json:"type"`
	Usager       string         `json:"usager,omitempty"`
}

// Time is an instant written as RFC 3339 in UTC with milliseconds.
type Time struct{ time.Time }

const timeLayout = "2006-01-02T15:04:05.000Z"

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(timeLayout) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(timeLayout, s)
	if err != nil {
		return fmt.Errorf("audit: event time %q: %w", s, err)
	}
	t.Time = v
	return nil
}

// Canonical returns the canonical JSON bytes of the event: keys sorted, no
// insignificant space, no HTML escaping — what encoding/json produces for
// Event with SetEscapeHTML(false), written without reflection because the
// writer does it for every event (a test checks the two agree).
func (e *Event) Canonical() ([]byte, error) {
	b := make([]byte, 0, 384)
	b = append(b, `{"actor":{"id":`...)
	b = appendString(b, e.Actor.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, e.Actor.Kind)
	b = append(b, '}')
	b = appendField(b, "aidant", e.Aidant)
	if len(e.Demarches) > 0 {
		b = append(b, `,"demarches":[`...)
		for i, d := range e.Demarches {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, d)
		}
		b = append(b, ']')
	}
	if len(e.Detail) > 0 {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e.Detail); err != nil {
			return nil, fmt.Errorf("audit: encode %s detail: %w", e.Type, err)
		}
		b = append(b, `,"detail":`...)
		b = append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
	}
	b = appendField(b, "mandate", e.Mandate)
	b = appendField(b, "organisation", e.Organisation)
	b = appendField(b, "reason", e.Reason)
	b = appendField(b, "service", e.Service)
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","type":`...)
	b = appendString(b, e.Type)
	b = appendField(b, "usager", e.Usager)
	return append(b, '}'), nil
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does without HTML escaping:
// quote, backslash and control characters escaped, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ParseEvent decodes a stored event body.
func ParseEvent(body []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("audit: decode event: %w", err)
	}
	return e, nil
}

// check refuses events that could not be read back or that look wrong.
func (e *Event) check() error {
	if !KnownType(e.Type) {
		return fmt.Errorf("audit: unknown event type %q", e.Type)
	}
	switch e.Actor.Kind {
	case ActorAidant, ActorUsager, ActorService, ActorAuditor, ActorOperator, ActorSystem:
	default:
		return fmt.Errorf("audit: %s: unknown actor kind %q", e.Type, e.Actor.Kind)
	}
	if e.Actor.ID == "" {
		return fmt.Errorf("audit: %s: actor id is required", e.Type)
	}
	for _, d := range e.Demarches {
		if d == "" || strings.Contains(d, ",") {
			return fmt.Errorf("audit: %s: bad démarche code %q", e.Type, d)
		}
	}
	return nil
}
