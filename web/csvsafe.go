package web

import "strings"

// csvSafe defuses cells that a spreadsheet would read as a formula (a
// name typed as "=HYPERLINK(…)", say): they are prefixed with a quote,
// which spreadsheets show as text (OWASP's CSV injection advice).
func csvSafe(row []string) []string {
	for i, c := range row {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			row[i] = "'" + c
		}
	}
	return row
}
