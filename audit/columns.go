package audit

import (
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The queryable columns of an event (type, time, organisation, aidant,
// usager, mandate, service, démarches) are copies of fields of its hashed
// body, kept for the journal's filters. Nothing signs them: an operator who
// drops the triggers could change them to hide an event from a person's
// space or from a scoped auditor, so audit verify recomputes each one from
// the body (SPEC §6.1). The body is read by a small scanner of the
// canonical form the writer produces, with encoding/json as the fallback for
// anything unusual, so that checking them costs little beside the hashing.

// bodyFields are the fields of a body that have a column. Strings may
// alias the body.
type bodyFields struct {
	typ, time                                      string
	organisation, aidant, usager, mandate, service string
	demarches                                      []string
}

// columnNames are the nullable columns, in the order packColumns packs
// them after salt length, type and time.
var columnNames = [6]string{"organisation_id", "aidant_id", "usager_id", "mandate_id", "service_id", "demarches"}

// packedNames name the fields of a packed row.
var packedNames = append([]string{"salt", "type", "time"}, columnNames[:]...)

// packColumns is the string the verify query builds from a stored row:
// the salt's length, the type, the time in Unix milliseconds, then each
// nullable column as "=value" or "-" for NULL, separated by 0x1f. A
// column holding 0x1f shifts the fields after it, and is caught all the
// same.
func packColumns(buf []byte, saltLen int, f *bodyFields, ms int64) []byte {
	buf = strconv.AppendInt(buf[:0], int64(saltLen), 10)
	buf = append(buf, 0x1f)
	buf = append(buf, f.typ...)
	buf = append(buf, 0x1f)
	buf = strconv.AppendInt(buf, ms, 10)
	for _, v := range [5]string{f.organisation, f.aidant, f.usager, f.mandate, f.service} {
		buf = append(buf, 0x1f)
		if v == "" {
			buf = append(buf, '-')
		} else {
			buf = append(buf, '=')
			buf = append(buf, v...)
		}
	}
	buf = append(buf, 0x1f)
	if len(f.demarches) == 0 {
		return append(buf, '-')
	}
	buf = append(buf, '=', ',')
	for _, d := range f.demarches {
		buf = append(buf, d...)
		buf = append(buf, ',')
	}
	return buf
}

// checkPacked returns the name of the first stored field of r that its
// body does not give, or "". buf is scratch space, returned for reuse.
func checkPacked(r *rawEvent, buf []byte) (string, []byte) {
	fields := strings.SplitN(r.columns, "\x1f", 2)
	if len(r.saltBody) < SaltSize || fields[0] != strconv.Itoa(SaltSize) {
		return "salt", buf
	}
	body := r.saltBody[SaltSize:]
	var f bodyFields
	var dem [4]string
	f.demarches = dem[:0]
	if !scanBody(body, &f) {
		ev, err := ParseEvent(body)
		if err != nil {
			return "body", buf
		}
		f = bodyFields{typ: ev.Type, organisation: ev.Organisation, aidant: ev.Aidant, usager: ev.Usager,
			mandate: ev.Mandate, service: ev.Service, demarches: ev.Demarches}
		if !ev.Time.IsZero() {
			f.time = ev.Time.UTC().Format(timeLayout)
		}
	}
	ms, ok := parseMillis(f.time)
	if !ok {
		return "time", buf
	}
	buf = packColumns(buf, SaltSize, &f, ms)
	if string(buf) == r.columns {
		return "", buf
	}
	want, got := strings.Split(string(buf), "\x1f"), strings.Split(r.columns, "\x1f")
	for i := range want {
		if i >= len(got) || want[i] != got[i] {
			return packedNames[i], buf
		}
	}
	return packedNames[len(packedNames)-1], buf
}

// scanBody reads the top-level fields of a canonical body into f. It
// reports false, leaving the work to encoding/json, on anything but plain
// strings without escapes in the fields it reads.
func scanBody(b []byte, f *bodyFields) bool {
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := 1
	for {
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return i == len(b)-1
		}
		key, next, ok := plainString(b, i)
		if !ok || next >= len(b) || b[next] != ':' {
			return false
		}
		i = next + 1
		if i >= len(b) {
			return false
		}
		switch key {
		case "type", "time", "organisation", "aidant", "usager", "mandate", "service":
			v, next, ok := plainString(b, i)
			if !ok {
				return false
			}
			i = next
			switch key {
			case "type":
				f.typ = v
			case "time":
				f.time = v
			case "organisation":
				f.organisation = v
			case "aidant":
				f.aidant = v
			case "usager":
				f.usager = v
			case "mandate":
				f.mandate = v
			case "service":
				f.service = v
			}
		case "demarches":
			if b[i] != '[' {
				return false
			}
			i++
			f.demarches = f.demarches[:0]
			for i < len(b) && b[i] != ']' {
				v, next, ok := plainString(b, i)
				if !ok || next >= len(b) {
					return false
				}
				f.demarches = append(f.demarches, v)
				i = next
				if b[i] == ',' {
					i++
				} else if b[i] != ']' {
					return false
				}
			}
			if i >= len(b) {
				return false
			}
			i++
		default:
			next, ok := skipValue(b, i)
			if !ok {
				return false
			}
			i = next
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
		default:
			return false
		}
	}
}

// plainString reads the string starting at b[i] (a quote) and returns it,
// aliasing b, with the index after its closing quote. A string with an
// escape is not plain.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			if j == i+1 {
				return "", j + 1, true
			}
			return unsafe.String(&b[i+1], j-i-1), j + 1, true
		case '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// skipValue skips the object or string starting at b[i] (the only kinds
// of top-level values besides those read), and returns the index after it.
func skipValue(b []byte, i int) (int, bool) {
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case '"':
				next, ok := skipValue(b, j)
				if !ok {
					return 0, false
				}
				j = next - 1
			}
		}
	}
	return 0, false
}

// parseMillis reads "2006-01-02T15:04:05.000Z" as Unix milliseconds.
func parseMillis(s string) (int64, bool) {
	if len(s) != len(timeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return 0, false
	}
	num := func(from, to int) (int64, bool) {
		var n int64
		for k := from; k < to; k++ {
			c := s[k]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		}
		return n, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	h, ok4 := num(11, 13)
	mi, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	ms, ok7 := num(20, 23)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59 {
		return 0, false
	}
	return (daysFromCivil(y, mo, d)*86400+h*3600+mi*60+sec)*1000 + ms, true
}

// daysFromCivil counts the days from 1970-01-01 to y-m-d (proleptic
// Gregorian calendar; H. Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// columnsValidUTF8 tells whether the fields of e that have a column are
// valid UTF-8, so that they are stored as the body spells them.
func columnsValidUTF8(e *Event) bool {
	for _, s := range [...]string{e.Type, e.Organisation, e.Aidant, e.Usager, e.Mandate, e.Service} {
		if !utf8.ValidString(s) {
			return false
		}
	}
	for _, d := range e.Demarches {
		if !utf8.ValidString(d) {
			return false
		}
	}
	return true
}
