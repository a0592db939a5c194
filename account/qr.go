package account

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	"github.com/boombuler/barcode/qr"
)

const (
	qrQuiet = 4 // quiet-zone width in modules (ISO/IEC 18004)
	qrScale = 8 // PNG pixels per module
)

// QRMatrix returns the modules of the QR code for text (true = dark), without
// the quiet zone; both the PNG and the SVG are drawn from it.
func QRMatrix(text string) ([][]bool, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("account: QR encode: %w", err)
	}
	b := code.Bounds()
	m := make([][]bool, b.Dy())
	for y := range m {
		m[y] = make([]bool, b.Dx())
		for x := range m[y] {
			r, _, _, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA()
			m[y][x] = r == 0
		}
	}
	return m, nil
}

// QRPNG draws the matrix as a black-on-white PNG with a quiet zone.
func QRPNG(m [][]bool) ([]byte, error) {
	n := len(m)
	side := (n + 2*qrQuiet) * qrScale
	img := image.NewGray(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range m {
		for x, dark := range row {
			if !dark {
				continue
			}
			for dy := 0; dy < qrScale; dy++ {
				for dx := 0; dx < qrScale; dx++ {
					img.SetGray((x+qrQuiet)*qrScale+dx, (y+qrQuiet)*qrScale+dy, color.Gray{})
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// QRSVG draws the matrix as a self-contained SVG: one unit square per dark
// module, offset by the quiet zone.
func QRSVG(m [][]bool) string {
	n := len(m) + 2*qrQuiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges">`, n, n, n*qrScale, n*qrScale)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range m {
		for x, dark := range row {
			if dark {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+qrQuiet, y+qrQuiet)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}
