package web

import (
	"encoding/csv"
	"io"
	"strings"
)

// frenchCSV starts a CSV file for people's spreadsheets: UTF-8 with a
// byte-order mark (so that they read the accents) and ";" between cells,
// as French spreadsheet programs expect.
func frenchCSV(w io.Writer) *csv.Writer {
	io.WriteString(w, "\ufeff")
	cw := csv.NewWriter(w)
	cw.Comma = ';'
	return cw
}

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
