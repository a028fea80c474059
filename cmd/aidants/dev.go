package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"aidants/audit"
	"aidants/devidp"
	"aidants/devsvc"
	"aidants/mandate"
	"aidants/org"
	"aidants/provider"
	"aidants/store"
)

// The demo organisations of development mode.
const (
	demoSIRET      = "98765432100015"
	demoName       = "France Services de Nantes (démo)"
	secondSIRET    = "13579246800013"
	secondName     = "Médiathèque de Rezé (démo)"
	devSeedVersion = "1"
)

var devSeedActor = audit.Actor{Kind: audit.ActorSystem, ID: "dev-seed"}

// devProviders builds the development identity providers of this server.
func devProviders(public string, s *devSecrets) (aidants, fc *devidp.Provider, err error) {
	aidants, err = devidp.New(devidp.Options{
		Issuer: public + "/dev/aidants", Title: "ProConnect (développement)", Kind: devidp.KindAidants,
		Identities: devidp.AidantIdentities(demoSIRET), StylesheetURL: "/static/aidants.css",
		Clients: []devidp.Client{{ID: devAidantsClient, Secret: s.AidantsClientSecret,
			RedirectURIs: []string{public + "/connexion/aidant/retour"}, PostLogoutRedirectURIs: []string{public + "/deconnecte"}}},
	})
	if err != nil {
		return nil, nil, err
	}
	fc, err = devidp.New(devidp.Options{
		Issuer: public + "/dev/franceconnect", Title: "FranceConnect (développement)", Kind: devidp.KindFranceConnect,
		Identities: devidp.UsagerIdentities(), StylesheetURL: "/static/aidants.css",
		Clients: []devidp.Client{{ID: devFCClient, Secret: s.FCClientSecret,
			RedirectURIs:           []string{public + "/franceconnect/retour"},
			PostLogoutRedirectURIs: []string{public + "/mon-espace/deconnecte", public + "/deconnecte"}}},
	})
	return aidants, fc, err
}

type seedAidant struct {
	email, sub, given, family string
	orgs                      []string
	referent                  bool
}

var seedAidants = []seedAidant{
	{devidp.EmailCamille, devidp.SubCamille, "Camille", "Martin", []string{demoSIRET}, false},
	{devidp.EmailDominique, devidp.SubDominique, "Dominique", "Bernard", []string{demoSIRET}, false},
	{devidp.EmailSacha, devidp.SubSacha, "Sacha", "Petit", []string{demoSIRET}, true},
	{devidp.EmailAlex, devidp.SubAlex, "Alex", "Moreau", []string{demoSIRET, secondSIRET}, false},
}

// seedDev creates, once, the demo organisations and aidants of development
// mode, and at every start binds them to the development provider's
// identities (its issuer follows the listening port).
func seedDev(ctx context.Context, in *instance, aidantsIssuer, fcIssuer string) error {
	var done string
	err := in.db.R.GetContext(ctx, &done, `SELECT value FROM instance_meta WHERE key = 'dev_seed'`)
	if err != nil && !errors.Is(store.NotFound(err, ""), store.ErrNotFound) {
		return err
	}
	if done == "" {
		if err := seedOnce(ctx, in); err != nil {
			return fmt.Errorf("dev seed: %w", err)
		}
	}
	err = setMeta(ctx, in, "dev_public_url", in.cfg.Server.PublicURL)
	if err != nil {
		return fmt.Errorf("dev seed: %w", err)
	}
	for _, s := range seedAidants {
		a, err := in.dir.AidantByEmail(ctx, s.email)
		if errors.Is(err, org.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if a.Issuer != aidantsIssuer || a.Subject != s.sub {
			if err := in.dir.BindIdentity(ctx, devSeedActor, a.ID, aidantsIssuer, s.sub); err != nil {
				return fmt.Errorf("dev seed: bind %s: %w", s.email, err)
			}
		}
	}
	// The fictional persons, too, follow the development FranceConnect's
	// issuer, so that a restart on another port finds them again.
	for _, u := range devidp.UsagerIdentities() {
		err := in.log.Write(ctx, func(tx *audit.Tx) error {
			var id string
			err := tx.Get(&id, `SELECT id FROM usagers WHERE subject = ? AND issuer <> ?
				AND NOT EXISTS (SELECT 1 FROM usagers WHERE issuer = ? AND subject = ?)`, u.Sub, fcIssuer, fcIssuer, u.Sub)
			if errors.Is(store.NotFound(err, ""), store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE usagers SET issuer = ?, updated_at = ? WHERE id = ?`, fcIssuer, store.T(tx.Now()), id); err != nil {
				return err
			}
			_, err = tx.Append(audit.Event{Type: audit.UsagerIdentified, Actor: devSeedActor, Usager: id, Detail: map[string]any{"identity": "bound"}})
			return err
		})
		if err != nil {
			return fmt.Errorf("dev seed: bind usager: %w", err)
		}
	}
	return nil
}

func seedOnce(ctx context.Context, in *instance) error {
	ids := map[string]string{}
	for _, o := range []org.NewOrganisation{{Name: demoName, SIRET: demoSIRET}, {Name: secondName, SIRET: secondSIRET}} {
		existing, err := in.dir.OrganisationBySIRET(ctx, o.SIRET)
		if err == nil {
			ids[o.SIRET] = existing.ID
			continue
		}
		if !errors.Is(err, org.ErrNotFound) {
			return err
		}
		created, err := in.dir.AddOrganisation(ctx, devSeedActor, o)
		if err != nil {
			return err
		}
		ids[o.SIRET] = created.ID
	}
	until := time.Now().AddDate(1, 0, 0).Format(time.DateOnly)
	for _, s := range seedAidants {
		for _, siret := range s.orgs {
			_, err := in.dir.AddAidant(ctx, devSeedActor, org.NewAidant{OrganisationID: ids[siret], Email: s.email,
				GivenName: s.given, FamilyName: s.family, HabilitatedUntil: until, Referent: s.referent, Aidant: true})
			if err != nil && !errors.Is(err, org.ErrConflict) {
				return err
			}
		}
	}
	return in.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`INSERT INTO instance_meta (key, value) VALUES ('dev_seed', ?)`, devSeedVersion)
		return err
	})
}

func setMeta(ctx context.Context, in *instance, key, value string) error {
	return in.log.Write(ctx, func(tx *audit.Tx) error {
		_, err := tx.Exec(`INSERT INTO instance_meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	})
}

// demoService registers, once, the demo public service of development
// mode (a private_key_jwt client serving every démarche) and keeps its
// redirect URIs on the current port. It returns the service's handler.
func demoService(ctx context.Context, in *instance, dataDir string) (*devsvc.Service, error) {
	s, err := loadDevSecrets(dataDir)
	if err != nil {
		return nil, err
	}
	var key jose.JSONWebKey
	if len(s.DemoServiceKey) == 0 {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = jose.JSONWebKey{Key: priv, KeyID: store.RandomToken(9), Algorithm: "ES256", Use: "sig"}
		if s.DemoServiceKey, err = key.MarshalJSON(); err != nil {
			return nil, err
		}
		if err := saveDevSecrets(dataDir, s); err != nil {
			return nil, err
		}
	} else if err := key.UnmarshalJSON(s.DemoServiceKey); err != nil {
		return nil, fmt.Errorf("demo service key: %w", err)
	}
	public := in.cfg.Server.PublicURL
	redirects, postLogout := []string{public + "/dev/service/retour"}, []string{public + "/dev/service"}
	var id string
	in.db.R.GetContext(ctx, &id, `SELECT value FROM instance_meta WHERE key = 'dev_service_id'`)
	if svc, err := in.provider.Service(ctx, id); err == nil {
		if len(svc.RedirectURIs) != 1 || svc.RedirectURIs[0] != redirects[0] {
			if err := in.provider.SetRedirects(ctx, devSeedActor, id, redirects, postLogout); err != nil {
				return nil, err
			}
		}
	} else {
		jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
		svc, _, err := in.provider.AddService(ctx, devSeedActor, provider.NewService{Name: "Service démo (développement)",
			RedirectURIs: redirects, PostLogoutURIs: postLogout, Demarches: mandate.Codes(), AuthMethod: provider.PrivateKeyJWT, JWKS: string(jwks)})
		if err != nil {
			return nil, fmt.Errorf("demo service: %w", err)
		}
		id = svc.ID
		if err := setMeta(ctx, in, "dev_service_id", id); err != nil {
			return nil, err
		}
	}
	return devsvc.New(devsvc.Options{Issuer: public, BaseURL: public + "/dev/service", ClientID: id,
		Key: key.Key.(*ecdsa.PrivateKey), KeyID: key.KeyID}), nil
}
