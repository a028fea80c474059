package devidp

// Subjects and emails of the default aidant identities.
const (
	SubCamille   = "dev-aidant-camille"
	SubDominique = "dev-aidant-dominique"
	SubSacha     = "dev-referent-sacha"
	SubAlex      = "dev-aidant-alex"

	EmailCamille   = "camille.martin@france-services.example"
	EmailDominique = "dominique.bernard@france-services.example"
	EmailSacha     = "sacha.petit@france-services.example"
	EmailAlex      = "alex.moreau@france-services.example"
)

// Subjects and emails of the default usager identities.
const (
	SubJosephine = "dev-usager-josephine"
	SubAhmed     = "dev-usager-ahmed"
	SubLucie     = "dev-usager-lucie"

	EmailJosephine = "josephine.lefevre@example.org"
	EmailAhmed     = "ahmed.benali@example.org"
	EmailLucie     = "lucie.garnier@example.org"
)

// INSEE country code of France in the birthcountry claim.
const CountryFrance = "99100"

// AidantIdentities returns the default fictional aidants, with
// ProConnect-like claims. siret is the demo organisation's SIRET, released
// in the "siret" claim. Each call returns fresh maps.
func AidantIdentities(siret string) []Identity {
	aidant := func(sub, label, given, usual, email, uid string, mfa bool) Identity {
		return Identity{
			Sub:   sub,
			Label: label,
			MFA:   mfa,
			Claims: map[string]any{
				"given_name": given,
				"usual_name": usual,
				"email":      email,
				// The provider says it checked the address: the service matches
				// a pending aidant by email only then.
				"email_verified": true,
				"uid":            uid,
				"siret":          siret,
			},
		}
	}
	return []Identity{
		aidant(SubCamille, "Camille Martin — aidante, double authentification",
			"Camille", "Martin", EmailCamille, "uid-camille-martin", true),
		aidant(SubDominique, "Dominique Bernard — aidant, sans double authentification (le service refuse la connexion)",
			"Dominique", "Bernard", EmailDominique, "uid-dominique-bernard", false),
		aidant(SubSacha, "Sacha Petit — référente, double authentification",
			"Sacha", "Petit", EmailSacha, "uid-sacha-petit", true),
		aidant(SubAlex, "Alex Moreau — aidant de deux structures, double authentification",
			"Alex", "Moreau", EmailAlex, "uid-alex-moreau", true),
	}
}

// UsagerIdentities returns the default fictional persons, with the
// FranceConnect pivot identity claims. Each call returns fresh maps.
func UsagerIdentities() []Identity {
	usager := func(sub, label, given, family, birthdate, gender, place, country, email string) Identity {
		return Identity{
			Sub:   sub,
			Label: label,
			Claims: map[string]any{
				"given_name":   given,
				"family_name":  family,
				"birthdate":    birthdate,
				"gender":       gender,
				"birthplace":   place,
				"birthcountry": country,
				"email":        email,
			},
		}
	}
	return []Identity{
		usager(SubJosephine, "Joséphine Marie Lefèvre — née le 12/03/1948 à Nantes",
			"Joséphine Marie", "Lefèvre", "1948-03-12", "female", "44109", CountryFrance, EmailJosephine),
		usager(SubAhmed, "Ahmed Benali — né le 02/11/1975 au Maroc",
			"Ahmed", "Benali", "1975-11-02", "male", "", "99350", EmailAhmed),
		usager(SubLucie, "Lucie Garnier — née le 30/06/1990 à Paris",
			"Lucie", "Garnier", "1990-06-30", "female", "75056", CountryFrance, EmailLucie),
	}
}
