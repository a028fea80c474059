package notify

import (
	"time"

	"aidants/mail"
	"aidants/mandate"
)

// The messages, in plain French (issue 14's wording rules): the person is
// addressed by name, the aidant named in full with their organisation, no
// median-dot ending, dates in words in Paris time.

// greeting is the first line of the person's messages.
const greeting = `Bonjour {{.Person.Name}},`

type demarche struct{ Label, About string }

func explained(codes []string) []demarche {
	out := make([]demarche, len(codes))
	for i, c := range codes {
		out[i] = demarche{Label: mandate.Label(c)}
		if d, ok := mandate.LookupDemarche(c); ok {
			out[i].About = d.Description
		}
	}
	return out
}

type signedData struct {
	Person       Person
	Aidant       string
	Organisation string
	Ref          string
	Demarches    []demarche
	At, Until    time.Time
	Remote       bool
	Space        string
}

var signedMail = mail.MustTemplate[signedData]("mandat-signe",
	`Vous avez signé un mandat avec {{.Organisation}}`,
	greeting+`

Le {{datetime .At}}, vous avez autorisé {{.Aidant}}, de {{.Organisation}}, à faire pour vous ces démarches en ligne{{if .Remote}} (vous avez donné votre accord à distance){{end}} :
{{range .Demarches}}
- {{.Label}}{{if .About}} : {{.About}}{{end}}{{end}}

Ce mandat (n° {{.Ref}}) prend fin le {{date .Until}}.

Vous pouvez le relire et le retirer à tout moment dans votre espace, après vous être connecté avec FranceConnect :
{{.Space}}

Si vous n'avez pas donné cet accord, retirez le mandat dans votre espace et prévenez {{.Organisation}}.`,
	`<h1>Vous avez signé un mandat avec {{.Organisation}}</h1>
<p>Bonjour {{.Person.Name}},</p>
<p>Le {{datetime .At}}, vous avez autorisé <strong>{{.Aidant}}</strong>, de <strong>{{.Organisation}}</strong>, à faire pour vous ces démarches en ligne{{if .Remote}} (vous avez donné votre accord à distance){{end}} :</p>
<ul>{{range .Demarches}}<li><strong>{{.Label}}</strong>{{if .About}} : {{.About}}{{end}}</li>{{end}}</ul>
<p>Ce mandat (n° {{.Ref}}) prend fin le <strong>{{date .Until}}</strong>.</p>
<p>Vous pouvez le relire et le retirer à tout moment dans votre espace, après vous être connecté avec FranceConnect :</p>
<p><a class="bouton" href="{{.Space}}">{{.Space}}</a></p>
<p>Si vous n'avez pas donné cet accord, retirez le mandat dans votre espace et prévenez {{.Organisation}}.</p>`)

type actionLine struct {
	At                            time.Time
	Aidant, Organisation, Service string
	Demarche                      string
	Object                        string // "Ce n'était pas d'accord"
}

type actionsData struct {
	Person          Person
	Actions         []actionLine
	Space, Settings string
}

var actionsMail = mail.MustTemplate[actionsData]("demarche-faite",
	`{{if eq (len .Actions) 1}}{{with index .Actions 0}}{{.Aidant}} a fait une démarche pour vous sur {{.Service}}{{end}}{{else}}{{len .Actions}} démarches ont été faites pour vous{{end}}`,
	greeting+`
{{if eq (len .Actions) 1}}
Une démarche a été faite pour vous :{{else}}
{{len .Actions}} démarches ont été faites pour vous dans l'heure :{{end}}
{{range .Actions}}
- le {{datetime .At}}, {{.Aidant}}, de {{.Organisation}}, a ouvert « {{.Service}} » pour vous, pour la démarche « {{.Demarche}} ».
  Ce n'était pas d'accord ? Dites-le ici : {{.Object}}
{{end}}
Vous retrouvez toutes les démarches faites pour vous dans votre espace :
{{.Space}}

Vous ne voulez plus recevoir un courriel à chaque démarche ? Vous pouvez l'arrêter dans votre espace :
{{.Settings}}`,
	`<h1>{{if eq (len .Actions) 1}}Une démarche a été faite pour vous{{else}}{{len .Actions}} démarches ont été faites pour vous{{end}}</h1>
<p>Bonjour {{.Person.Name}},</p>
{{range .Actions}}<p>Le {{datetime .At}}, <strong>{{.Aidant}}</strong>, de {{.Organisation}}, a ouvert « {{.Service}} » pour vous, pour la démarche « {{.Demarche}} ».<br>
Ce n'était pas d'accord ? <a href="{{.Object}}">{{.Object}}</a></p>
{{end}}<p>Vous retrouvez toutes les démarches faites pour vous dans votre espace : <a href="{{.Space}}">{{.Space}}</a></p>
<p>Vous ne voulez plus recevoir un courriel à chaque démarche ? Vous pouvez l'arrêter dans votre espace : <a href="{{.Settings}}">{{.Settings}}</a></p>`)

type withdrawnData struct {
	Person       Person
	Organisation string
	Ref          string
	Demarches    []string
	Whole        bool
	ByPerson     bool
	By           string
	Reason       string
	At           time.Time
	Space        string
}

var withdrawnMail = mail.MustTemplate[withdrawnData]("mandat-retire",
	`{{if .Whole}}Votre mandat avec {{.Organisation}} est retiré{{else}}Une démarche est retirée de votre mandat avec {{.Organisation}}{{end}}`,
	greeting+`

{{if .Whole}}Le {{datetime .At}}, votre mandat n° {{.Ref}} avec {{.Organisation}} a été retiré{{else}}Le {{datetime .At}}, la démarche « {{list .Demarches}} » a été retirée de votre mandat n° {{.Ref}} avec {{.Organisation}}{{end}} {{if .ByPerson}}par vous, depuis votre espace{{else}}par {{.By}}{{end}}.
{{if not .ByPerson}}Raison donnée : {{.Reason}}.
{{end}}
{{if .Whole}}Plus personne de {{.Organisation}} ne peut faire de démarche pour vous avec ce mandat.{{else}}Plus personne de {{.Organisation}} ne peut faire cette démarche pour vous avec ce mandat.{{end}}

Votre espace :
{{.Space}}`,
	`<h1>{{if .Whole}}Votre mandat avec {{.Organisation}} est retiré{{else}}Une démarche est retirée de votre mandat{{end}}</h1>
<p>Bonjour {{.Person.Name}},</p>
<p>{{if .Whole}}Le {{datetime .At}}, votre mandat n° {{.Ref}} avec {{.Organisation}} a été retiré{{else}}Le {{datetime .At}}, la démarche « {{list .Demarches}} » a été retirée de votre mandat n° {{.Ref}} avec {{.Organisation}}{{end}} {{if .ByPerson}}par vous, depuis votre espace{{else}}par {{.By}}{{end}}.</p>
{{if not .ByPerson}}<p>Raison donnée : {{.Reason}}.</p>{{end}}
<p>{{if .Whole}}Plus personne de {{.Organisation}} ne peut faire de démarche pour vous avec ce mandat.{{else}}Plus personne de {{.Organisation}} ne peut faire cette démarche pour vous avec ce mandat.{{end}}</p>
<p>Votre espace : <a href="{{.Space}}">{{.Space}}</a></p>`)

type endingData struct {
	Person       Person
	Organisation string
	Ref          string
	Demarches    []string
	Until        time.Time
	Space        string
}

var endingMail = mail.MustTemplate[endingData]("mandat-fin-proche",
	`Votre mandat avec {{.Organisation}} prend fin le {{date .Until}}`,
	greeting+`

Votre mandat n° {{.Ref}} avec {{.Organisation}} prend fin le {{datetime .Until}}. Ensuite, plus personne de {{.Organisation}} ne pourra faire pour vous ces démarches : {{list .Demarches}}.

Vous n'avez rien à faire si vous n'en avez plus besoin. Sinon, demandez à {{.Organisation}} de le renouveler : il vous faudra redonner votre accord avec FranceConnect.

Votre espace :
{{.Space}}`,
	`<h1>Votre mandat avec {{.Organisation}} prend fin le {{date .Until}}</h1>
<p>Bonjour {{.Person.Name}},</p>
<p>Votre mandat n° {{.Ref}} avec {{.Organisation}} prend fin le <strong>{{datetime .Until}}</strong>. Ensuite, plus personne de {{.Organisation}} ne pourra faire pour vous ces démarches : {{list .Demarches}}.</p>
<p>Vous n'avez rien à faire si vous n'en avez plus besoin. Sinon, demandez à {{.Organisation}} de le renouveler : il vous faudra redonner votre accord avec FranceConnect.</p>
<p>Votre espace : <a href="{{.Space}}">{{.Space}}</a></p>`)

type habilitationData struct {
	Name  string
	Until time.Time
	Site  string
}

var habilitationMail = mail.MustTemplate[habilitationData]("habilitation-fin-proche",
	`Votre habilitation Aidants prend fin le {{date .Until}}`,
	`Bonjour {{.Name}},

Votre habilitation à faire des démarches pour d'autres personnes avec Aidants prend fin le {{date .Until}} au soir. Ensuite, vous ne pourrez plus vous connecter à Aidants ni utiliser vos mandats.

Pour la prolonger, demandez à la personne référente de votre structure de solliciter son renouvellement auprès de l'équipe qui gère Aidants.

{{.Site}}`,
	`<h1>Votre habilitation Aidants prend fin le {{date .Until}}</h1>
<p>Bonjour {{.Name}},</p>
<p>Votre habilitation à faire des démarches pour d'autres personnes avec Aidants prend fin le <strong>{{date .Until}}</strong> au soir. Ensuite, vous ne pourrez plus vous connecter à Aidants ni utiliser vos mandats.</p>
<p>Pour la prolonger, demandez à la personne référente de votre structure de solliciter son renouvellement auprès de l'équipe qui gère Aidants.</p>
<p><a href="{{.Site}}">{{.Site}}</a></p>`)

// LinkData is the remote consent link sent by email (SPEC §5.2): the one
// message that carries a token, single-use, expiring, and useless without
// the person's FranceConnect.
type LinkData struct {
	Aidant, Organisation string
	Demarches            []string
	Link                 string
	Expires              time.Time
}

// LinkMail is the message of a remote consent link.
var LinkMail = mail.MustTemplate[LinkData]("lien-consentement",
	`{{.Aidant}}, de {{.Organisation}}, vous demande votre accord`,
	`Bonjour,

{{.Aidant}}, de {{.Organisation}}, vous propose de faire pour vous ces démarches en ligne : {{list .Demarches}}.

Pour lire ce que vous autoriseriez, puis accepter ou refuser, ouvrez ce lien et connectez-vous avec FranceConnect :
{{.Link}}

Ce lien ne sert qu'une fois et n'est plus valable après le {{datetime .Expires}}. Ne le transmettez à personne.
Si vous ne connaissez pas {{.Aidant}} ou {{.Organisation}}, ne faites rien : sans votre accord, rien n'est fait.`,
	`<h1>{{.Aidant}}, de {{.Organisation}}, vous demande votre accord</h1>
<p>Bonjour,</p>
<p><strong>{{.Aidant}}</strong>, de <strong>{{.Organisation}}</strong>, vous propose de faire pour vous ces démarches en ligne : {{list .Demarches}}.</p>
<p>Pour lire ce que vous autoriseriez, puis accepter ou refuser, ouvrez ce lien et connectez-vous avec FranceConnect :</p>
<p><a class="bouton" href="{{.Link}}">{{.Link}}</a></p>
<p>Ce lien ne sert qu'une fois et n'est plus valable après le {{datetime .Expires}}. Ne le transmettez à personne.</p>
<p>Si vous ne connaissez pas {{.Aidant}} ou {{.Organisation}}, ne faites rien : sans votre accord, rien n'est fait.</p>`)
