package smtptest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
)

// Message is one delivered message: the envelope, the headers, and the decoded text and HTML
// bodies (single part, or the parts of a multipart message, nested multiparts included).
type Message struct {
	From    string      // envelope sender (MAIL FROM)
	Rcpt    []string    // envelope recipients (RCPT TO)
	Header  mail.Header // as sent; Subject decoded below
	To      []string    // addresses in the To header
	Subject string      // decoded (RFC 2047)
	Text    string      // the text/plain body, decoded, CRLF turned into LF
	HTML    string      // the text/html body, decoded, if any
	Raw     []byte      // the message as received
}

func parse(from string, rcpt []string, raw []byte) (Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Message{}, fmt.Errorf("reading headers: %w", err)
	}
	m := Message{From: from, Rcpt: append([]string(nil), rcpt...), Header: msg.Header, Raw: raw}
	dec := new(mime.WordDecoder)
	if m.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return Message{}, fmt.Errorf("decoding Subject: %w", err)
	}
	if msg.Header.Get("To") != "" {
		list, err := msg.Header.AddressList("To")
		if err != nil {
			return Message{}, fmt.Errorf("reading To: %w", err)
		}
		for _, a := range list {
			m.To = append(m.To, a.Address)
		}
	}
	if err := m.readPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body); err != nil {
		return Message{}, err
	}
	return m, nil
}

// readPart stores the first text/plain and text/html bodies found in a part and its children.
func (m *Message) readPart(contentType, encoding string, body io.Reader) error {
	if contentType == "" {
		contentType = "text/plain"
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("reading Content-Type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart() // raw: the transfer encoding is decoded below
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", mediaType, err)
			}
			if err := m.readPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body) // ignores CR and LF
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("decoding %s body (%s): %w", mediaType, encoding, err)
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	switch {
	case mediaType == "text/plain" && m.Text == "":
		m.Text = text
	case mediaType == "text/html" && m.HTML == "":
		m.HTML = text
	}
	return nil
}
