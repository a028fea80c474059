package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// AxeTags are the axe-core rule tags a page is judged on: every rule of
// WCAG 2.0, 2.1 and 2.2 at levels A and AA (what the RGAA asks) and axe's
// best practices. Experimental rules are left out: they change between
// releases of axe and would make a pinned version's verdict drift.
var AxeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"}

// Violation is one rule that axe-core found broken on a page, with the
// elements that break it.
type Violation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"` // CSS selectors of the elements
}

// Axe runs axe-core on the tab's current document and returns every
// violation, of any impact. script is the text of axe.min.js; it is
// injected once per document (through the DevTools protocol, so the
// page's Content-Security-Policy, which allows no inline script, does not
// stand in the way).
func Axe(ctx context.Context, script string) ([]Violation, error) {
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	if err != nil {
		return nil, fmt.Errorf("browsertest: axe: %w", err)
	}
	if !loaded {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](script+"\n;void 0")); err != nil {
			return nil, fmt.Errorf("browsertest: inject axe: %w", err)
		}
	}
	tags, _ := json.Marshal(AxeTags)
	run := `axe.run(document, {runOnly: {type: "tag", values: ` + string(tags) + `}, resultTypes: ["violations"]})
	.then(r => r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
		targets: v.nodes.map(n => n.target.map(String).join(" >>> "))})))`
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]Violation](run, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, fmt.Errorf("browsertest: axe.run: %w", err)
	}
	return vs, nil
}

// SetWidth makes the tab's viewport width CSS pixels wide (and a fixed
// height), as a window of that size would be, at a device scale of 1. The
// document in the tab is laid out again; it is not reloaded.
func SetWidth(ctx context.Context, width int64) error {
	height := int64(800)
	if width >= 1024 {
		height = 900
	}
	return chromedp.Do(ctx, chromedp.EmulateViewport(width, height))
}

// Overflow is the document's width against the viewport's.
type Overflow struct {
	ScrollWidth int `json:"scrollWidth"` // document.documentElement.scrollWidth
	ClientWidth int `json:"clientWidth"` // document.documentElement.clientWidth
}

// Scrolls reports whether the page scrolls sideways.
func (o Overflow) Scrolls() bool { return o.ScrollWidth > o.ClientWidth }

// HorizontalOverflow measures whether the page, at the current viewport,
// is wider than the viewport (WCAG 1.4.10 Reflow: at 320 CSS pixels, no
// scrolling in two directions).
func HorizontalOverflow(ctx context.Context) (Overflow, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[Overflow](
		`({scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth})`))
}

// Title returns the document's title, trimmed.
func Title(ctx context.Context) (string, error) {
	t, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`))
	return strings.TrimSpace(t), err
}

// FocusStyle is what shows that an element has the focus: its outline
// and its box shadow, as computed.
type FocusStyle struct {
	OutlineStyle string  `json:"outlineStyle"`
	OutlineWidth float64 `json:"outlineWidth"` // CSS pixels
	OutlineColor string  `json:"outlineColor"`
	BoxShadow    string  `json:"boxShadow"`
}

// Visible says whether the style draws anything: an outline of some
// width and colour, or a box shadow.
func (f FocusStyle) Visible() bool {
	outline := f.OutlineStyle != "none" && f.OutlineStyle != "hidden" && f.OutlineWidth > 0 && !transparent(f.OutlineColor)
	return outline || (f.BoxShadow != "" && f.BoxShadow != "none")
}

func transparent(color string) bool {
	c := strings.ReplaceAll(color, " ", "")
	return c == "transparent" || c == "rgba(0,0,0,0)" || strings.HasSuffix(c, ",0)")
}

func (f FocusStyle) String() string {
	return fmt.Sprintf("outline %s %gpx %s, box-shadow %s", f.OutlineStyle, f.OutlineWidth, f.OutlineColor, f.BoxShadow)
}

// TabStop is the element the first Tab key press of a page focuses.
type TabStop struct {
	Tag  string `json:"tag"`  // lower case: "a", "button"…
	Href string `json:"href"` // the href attribute as written
	Text string `json:"text"` // its visible text, trimmed
	// MainTarget: the link's href is "#id" and the element with that id
	// is the main landmark (<main> or role="main").
	MainTarget bool `json:"mainTarget"`
	// Focused and Unfocused are its styles with and without the focus.
	Focused   FocusStyle `json:"focused"`
	Unfocused FocusStyle `json:"unfocused"`
	// InView: while focused, its box is at least 2×2 pixels and lies
	// inside the viewport (a skip link that stays off-screen is not
	// seen by a keyboard user).
	InView bool `json:"inView"`
	// FocusVisible: :focus-visible matched, as it must after a key.
	FocusVisible bool `json:"focusVisible"`
}

// FirstTabStop presses Tab once from the top of the page — a real key
// event, as a keyboard user would — and describes the element that got
// the focus, in its focused and its unfocused state. It returns a zero
// TabStop (Tag "") when the key focused nothing. The focus is left off
// the element afterwards.
func FirstTabStop(ctx context.Context) (TabStop, error) {
	err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
			return err
		}),
		// The top of the page: focus the root element for a moment, so
		// the sequential navigation starts before every element.
		chromedp.Evaluate[chromedp.Void](`(() => {
			if (document.activeElement) document.activeElement.blur();
			window.scrollTo(0, 0);
			const h = document.documentElement;
			h.dataset.a11yHadTabindex = h.hasAttribute("tabindex") ? h.getAttribute("tabindex") : "none";
			h.setAttribute("tabindex", "-1");
			h.focus({preventScroll: true});
		})()`),
		chromedp.KeyEvent("\t"),
	)
	if err != nil {
		return TabStop{}, fmt.Errorf("browsertest: first tab: %w", err)
	}
	stop, err := chromedp.Run(ctx, chromedp.Evaluate[TabStop](`(() => {
		const h = document.documentElement;
		const had = h.dataset.a11yHadTabindex;
		delete h.dataset.a11yHadTabindex;
		if (had === "none") h.removeAttribute("tabindex"); else h.setAttribute("tabindex", had);
		const el = document.activeElement;
		if (!el || el === document.body || el === h) return {tag: ""};
		const style = () => {
			document.getAnimations().forEach(a => { try { a.finish(); } catch (e) {} });
			const s = getComputedStyle(el);
			return {outlineStyle: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
				outlineColor: s.outlineColor, boxShadow: s.boxShadow};
		};
		const focused = style();
		const r = el.getBoundingClientRect();
		const inView = r.width >= 2 && r.height >= 2 && r.right > 0 && r.bottom > 0 &&
			r.left < window.innerWidth && r.top < window.innerHeight;
		const focusVisible = el.matches(":focus-visible");
		const href = el.getAttribute("href") || "";
		let mainTarget = false;
		if (el.tagName === "A" && href.startsWith("#") && href.length > 1) {
			const target = document.getElementById(decodeURIComponent(href.slice(1)));
			mainTarget = !!target && (target.tagName === "MAIN" || target.getAttribute("role") === "main");
		}
		el.blur();
		const unfocused = style();
		return {tag: el.tagName.toLowerCase(), href, text: (el.innerText || "").trim(), mainTarget,
			focused, unfocused, inView, focusVisible};
	})()`))
	if err != nil {
		return TabStop{}, fmt.Errorf("browsertest: first tab stop: %w", err)
	}
	return stop, nil
}

// KeyboardStartProblems checks the start of a page for a keyboard user
// and says, in English for the test's report, what is wrong: the first
// Tab must reach a link to the main landmark (a skip link), which must
// then be visible, match :focus-visible, and be drawn differently —
// outline or box shadow — than when it has no focus. No problem: nil.
func KeyboardStartProblems(ctx context.Context) ([]string, error) {
	stop, err := FirstTabStop(ctx)
	if err != nil {
		return nil, err
	}
	if stop.Tag == "" {
		return []string{"skip-link: the first Tab focuses nothing"}, nil
	}
	var problems []string
	if stop.Tag != "a" || !stop.MainTarget {
		problems = append(problems, fmt.Sprintf("skip-link: the first Tab focuses <%s href=%q> %q, not a link to the main landmark", stop.Tag, stop.Href, stop.Text))
	}
	if !stop.InView {
		problems = append(problems, fmt.Sprintf("focus-visible: <%s> %q is not in view when focused", stop.Tag, stop.Text))
	}
	if !stop.FocusVisible {
		problems = append(problems, fmt.Sprintf("focus-visible: <%s> %q does not match :focus-visible after Tab", stop.Tag, stop.Text))
	}
	if !stop.Focused.Visible() || stop.Focused == stop.Unfocused {
		problems = append(problems, fmt.Sprintf("focus-visible: <%s> %q shows no focus indicator (focused: %s; unfocused: %s)", stop.Tag, stop.Text, stop.Focused, stop.Unfocused))
	}
	return problems, nil
}

// FullPageScreenshot returns a PNG of the whole document at the current
// viewport width (wider if the page overflows), from top to bottom.
func FullPageScreenshot(ctx context.Context) ([]byte, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		if m.CSSContentSize == nil || m.CSSLayoutViewport == nil {
			return nil, fmt.Errorf("browsertest: screenshot: no layout metrics")
		}
		w := math.Max(m.CSSContentSize.Width, float64(m.CSSLayoutViewport.ClientWidth))
		h := math.Ceil(m.CSSContentSize.Height)
		r, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			CaptureBeyondViewport: ptr(true),
			FromSurface:           ptr(true),
			Clip:                  &page.Viewport{X: 0, Y: 0, Width: math.Ceil(w), Height: h, Scale: 1},
		})
		if err != nil {
			return nil, fmt.Errorf("browsertest: screenshot: %w", err)
		}
		return r.Data, nil
	})
}

func ptr[T any](v T) *T { return &v }

// VisibleText returns the text a person sees on the page: the body's
// rendered text (attributes and hidden elements left out), without what a
// closed <details> holds besides its summary. The closed details are
// emptied for the reading and filled again.
func VisibleText(ctx context.Context) (string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const moved = [];
		for (const d of document.querySelectorAll("details:not([open])")) {
			const summary = d.querySelector(":scope > summary");
			const f = document.createDocumentFragment();
			for (const n of [...d.childNodes]) if (n !== summary) f.appendChild(n);
			moved.push([d, f]);
		}
		const text = document.body.innerText;
		for (const [d, f] of moved) d.appendChild(f);
		return text;
	})()`))
}

// SmallTargets lists the visible controls smaller than size CSS pixels in
// height or width: buttons, links styled as buttons, and the rows of
// check boxes and radio buttons (the label is their target).
func SmallTargets(ctx context.Context, size int) ([]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`(() => {
		const out = [];
		for (const el of document.querySelectorAll("button, a.button, input[type=submit], .check")) {
			const r = el.getBoundingClientRect();
			if (r.width === 0 && r.height === 0) continue; // not shown
			if (r.height < %[1]d || r.width < %[1]d) {
				out.push("<" + el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + "> " +
					JSON.stringify((el.innerText || el.value || "").trim().slice(0, 40)) + " is " + Math.round(r.width) + "×" + Math.round(r.height) + " px");
			}
		}
		return out;
	})()`, size)))
}
