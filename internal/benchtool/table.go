package benchtool

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Goal is a row's target: the measured value must be at most (AtMost) or at
// least (!AtMost) Limit.
type Goal struct {
	Limit  float64
	AtMost bool
}

// Met reports whether v meets the goal.
func (g Goal) Met(v float64) bool {
	if g.AtMost {
		return v <= g.Limit
	}
	return v >= g.Limit
}

func (g Goal) String() string {
	op := "≥"
	if g.AtMost {
		op = "≤"
	}
	return op + " " + formatValue(g.Limit)
}

// Row is one line of the table: what was measured, its value, its goal (nil:
// shown for information) and the raw figures it came from.
type Row struct {
	Name    string
	Value   float64
	Unit    string // "" for a ratio
	Goal    *Goal
	Figures string
}

// Miss says by how much a row misses its goal ("" when met or without goal):
// the shortfall as a percentage of the limit.
func (r Row) Miss() string {
	if r.Goal == nil || r.Goal.Met(r.Value) {
		return ""
	}
	return fmt.Sprintf("misses by %.0f%%", 100*abs(r.Value-r.Goal.Limit)/r.Goal.Limit)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func formatValue(v float64) string {
	switch {
	case v >= 1000:
		s := fmt.Sprintf("%.0f", v)
		// thousands separators
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// WriteTable prints rows as an aligned table: name, value, goal, verdict,
// figures.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio / figure\tmeasured\tgoal\tverdict\tfrom")
	for _, r := range rows {
		v := formatValue(r.Value)
		if r.Unit != "" {
			v += " " + r.Unit
		}
		goal, verdict := "-", "info"
		if r.Goal != nil {
			goal, verdict = r.Goal.String(), "ok"
			if m := r.Miss(); m != "" {
				verdict = "MISS (" + m + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, v, goal, verdict, r.Figures)
	}
	return tw.Flush()
}
