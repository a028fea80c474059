// Package templates holds the HTML pages and static assets of the service,
// embedded in the binary. Parse reads them all at start and fails if any
// is broken, so a bad template stops the service instead of one page.
//
// An operator may point the instance at a directory of overrides: a file
// there (templates/NAME.html or static/NAME) replaces the embedded one of
// the same name.
package templates

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

//go:embed *.html static
var embedded embed.FS

// Set is the parsed pages.
type Set struct {
	pages map[string]*template.Template
}

// layout is the page every other page fills: it defines "title" and
// "main" (and may define "head").
const layout = "layout.html"

// Parse parses every page, with funcs available to all of them. When
// overrideDir is not empty, its templates/ and static/ files replace the
// embedded ones.
func Parse(overrideDir string, funcs template.FuncMap) (*Set, error) {
	fsys := FS(overrideDir)
	names, err := fs.Glob(fsys, "*.html")
	if err != nil {
		return nil, err
	}
	read := func(name string) (string, error) {
		b, err := fs.ReadFile(fsys, name)
		return string(b), err
	}
	base, err := read(layout)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	root, err := template.New(layout).Funcs(funcs).Parse(base)
	if err != nil {
		return nil, fmt.Errorf("templates: %s: %w", layout, err)
	}
	s := &Set{pages: map[string]*template.Template{}}
	for _, name := range names {
		if name == layout || strings.HasPrefix(name, "_") {
			continue
		}
		body, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		t, err := template.Must(root.Clone()).Parse(body)
		if err != nil {
			return nil, fmt.Errorf("templates: %s: %w", name, err)
		}
		for _, block := range []string{"title", "main"} {
			if t.Lookup(block) == nil {
				return nil, fmt.Errorf("templates: %s does not define %q", name, block)
			}
		}
		s.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return s, nil
}

// Names lists the pages, sorted.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.pages))
	for n := range s.pages {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Render executes page with data.
func (s *Set) Render(w io.Writer, page string, data any) error {
	t, ok := s.pages[page]
	if !ok {
		return fmt.Errorf("templates: no page %q", page)
	}
	return t.ExecuteTemplate(w, layout, data)
}

// Static returns the static assets (embedded, with overrides).
func Static(overrideDir string) fs.FS {
	sub, _ := fs.Sub(FS(overrideDir), "static")
	return sub
}

// FS returns the embedded files with the override directory laid over
// them: templates at the root, assets under static/.
func FS(overrideDir string) fs.FS {
	if overrideDir == "" {
		return embedded
	}
	return overlay{top: os.DirFS(overrideDir), base: embedded}
}

// overlay serves a file from top when it exists there (pages from
// top/templates/, assets from top/static/), else from base.
type overlay struct{ top, base fs.FS }

func (o overlay) topName(name string) string {
	if strings.HasPrefix(name, "static/") || name == "static" {
		return name
	}
	return path.Join("templates", name)
}

func (o overlay) Open(name string) (fs.File, error) {
	if f, err := o.top.Open(o.topName(name)); err == nil {
		if st, err := f.Stat(); err == nil && !st.IsDir() {
			return f, nil
		}
		f.Close()
	}
	return o.base.Open(name)
}

// Glob lists the base's matches and the top's extra pages.
func (o overlay) Glob(pattern string) ([]string, error) {
	names, err := fs.Glob(o.base, pattern)
	if err != nil {
		return nil, err
	}
	extra, _ := fs.Glob(o.top, o.topName(pattern))
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, e := range extra {
		n := strings.TrimPrefix(e, "templates/")
		if !seen[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}
