package maa

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokenKind is the class of one lexical token.
type tokenKind int

// Token kinds. The values only order the table of names below.
const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokInt
	tokNumber // a dotted number, only valid as the version ("1.0")
	tokLBrace
	tokRBrace
	tokLBrack
	tokRBrack
	tokLParen
	tokRParen
	tokSemi
	tokComma
	tokColon
	tokDot
	tokAssign // =
	tokEq     // ==
	tokNe     // !=
	tokLt     // <
	tokLe     // <=
	tokGt     // >
	tokGe     // >=
	tokAnd    // &&
	tokNot    // !
	tokArrow  // =>
)

var tokenNames = [...]string{
	tokEOF:    "end of policy",
	tokIdent:  "identifier",
	tokString: "string",
	tokInt:    "integer",
	tokNumber: "version number",
	tokLBrace: "'{'",
	tokRBrace: "'}'",
	tokLBrack: "'['",
	tokRBrack: "']'",
	tokLParen: "'('",
	tokRParen: "')'",
	tokSemi:   "';'",
	tokComma:  "','",
	tokColon:  "':'",
	tokDot:    "'.'",
	tokAssign: "'='",
	tokEq:     "'=='",
	tokNe:     "'!='",
	tokLt:     "'<'",
	tokLe:     "'<='",
	tokGt:     "'>'",
	tokGe:     "'>='",
	tokAnd:    "'&&'",
	tokNot:    "'!'",
	tokArrow:  "'=>'",
}

func (k tokenKind) String() string { return tokenNames[k] }

// Pos is a position in the policy text: 1-based line and column, the column
// counted in characters (not bytes) so it matches what an editor shows.
type Pos struct {
	Line, Col int
}

// String formats p as "LINE:COL", the form error messages use.
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

type token struct {
	kind tokenKind
	pos  Pos
	text string // identifier name, decoded string, or number text
	ival int64  // tokInt value
}

// describe names a token for "expected X, found Y" messages.
func (t token) describe() string {
	switch t.kind {
	case tokIdent:
		return fmt.Sprintf("identifier %q", t.text)
	case tokString:
		return fmt.Sprintf("string %q", t.text)
	case tokInt, tokNumber:
		return fmt.Sprintf("number %s", t.text)
	}
	return t.kind.String()
}

// lexer turns policy text into tokens. It fails closed: any character that
// is not part of the grammar is an error with its position, never skipped.
type lexer struct {
	src  string
	off  int
	line int
	col  int
}

func newLexer(src string) *lexer { return &lexer{src: src, line: 1, col: 1} }

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

// advance moves past one character (rune), tracking line and column.
func (l *lexer) advance() {
	r, size := utf8.DecodeRuneInString(l.src[l.off:])
	l.off += size
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
}

func (l *lexer) peekByte(n int) byte {
	if l.off+n < len(l.src) {
		return l.src[l.off+n]
	}
	return 0
}

// skipSpace skips white space and comments. MAA's version 1.2 samples use
// "//" line comments; "/* */" is accepted too because policies are often
// written by people used to C-family languages.
func (l *lexer) skipSpace() error {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.advance()
		case c == '/' && l.peekByte(1) == '/':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance()
			}
		case c == '/' && l.peekByte(1) == '*':
			start := l.pos()
			l.advance()
			l.advance()
			for {
				if l.off >= len(l.src) {
					return &SyntaxError{Pos: start, Msg: "unterminated /* comment"}
				}
				if l.src[l.off] == '*' && l.peekByte(1) == '/' {
					l.advance()
					l.advance()
					break
				}
				l.advance()
			}
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isIdentChar(c byte) bool {
	return isIdentStart(c) || ('0' <= c && c <= '9') || c == '-'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// next returns the next token.
func (l *lexer) next() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return token{kind: tokEOF, pos: p}, nil
	}
	c := l.src[l.off]
	two := func(k tokenKind) (token, error) {
		l.advance()
		l.advance()
		return token{kind: k, pos: p}, nil
	}
	one := func(k tokenKind) (token, error) {
		l.advance()
		return token{kind: k, pos: p}, nil
	}
	switch c {
	case '{':
		return one(tokLBrace)
	case '}':
		return one(tokRBrace)
	case '[':
		return one(tokLBrack)
	case ']':
		return one(tokRBrack)
	case '(':
		return one(tokLParen)
	case ')':
		return one(tokRParen)
	case ';':
		return one(tokSemi)
	case ',':
		return one(tokComma)
	case ':':
		return one(tokColon)
	case '.':
		return one(tokDot)
	case '=':
		switch l.peekByte(1) {
		case '=':
			return two(tokEq)
		case '>':
			return two(tokArrow)
		}
		return one(tokAssign)
	case '!':
		if l.peekByte(1) == '=' {
			return two(tokNe)
		}
		return one(tokNot)
	case '<':
		if l.peekByte(1) == '=' {
			return two(tokLe)
		}
		return one(tokLt)
	case '>':
		if l.peekByte(1) == '=' {
			return two(tokGe)
		}
		return one(tokGt)
	case '&':
		if l.peekByte(1) == '&' {
			return two(tokAnd)
		}
		return token{}, &SyntaxError{Pos: p, Msg: "unexpected '&' (conditions are joined with \"&&\")"}
	case '"':
		return l.lexString(p)
	}
	if isDigit(c) || (c == '-' && isDigit(l.peekByte(1))) {
		return l.lexNumber(p)
	}
	if isIdentStart(c) {
		start := l.off
		for l.off < len(l.src) && isIdentChar(l.src[l.off]) {
			l.advance()
		}
		return token{kind: tokIdent, pos: p, text: l.src[start:l.off]}, nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	switch r {
	case '“', '”', '„', '″':
		// Documentation pages render quotes typographically; a policy
		// pasted from one fails here with a hint instead of a puzzle.
		return token{}, &SyntaxError{Pos: p, Msg: fmt.Sprintf("unexpected typographic quote %q: use a plain '\"'", r)}
	case utf8.RuneError:
		return token{}, &SyntaxError{Pos: p, Msg: "invalid UTF-8"}
	}
	return token{}, &SyntaxError{Pos: p, Msg: fmt.Sprintf("unexpected character %q", r)}
}

// lexString reads a double-quoted string. The escapes are those MAA's
// samples use (\" and \\) plus \n, \t, \r and \/; any other escape is an
// error rather than a guess.
func (l *lexer) lexString(p Pos) (token, error) {
	l.advance() // opening quote
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return token{}, &SyntaxError{Pos: p, Msg: "unterminated string"}
		}
		c := l.src[l.off]
		switch c {
		case '"':
			l.advance()
			return token{kind: tokString, pos: p, text: b.String()}, nil
		case '\n':
			return token{}, &SyntaxError{Pos: p, Msg: "unterminated string (newline inside)"}
		case '\\':
			ep := l.pos()
			l.advance()
			if l.off >= len(l.src) {
				return token{}, &SyntaxError{Pos: p, Msg: "unterminated string"}
			}
			e := l.src[l.off]
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				return token{}, &SyntaxError{Pos: ep, Msg: fmt.Sprintf("unknown escape \\%c in string", e)}
			}
			l.advance()
		default:
			r, size := utf8.DecodeRuneInString(l.src[l.off:])
			if r == utf8.RuneError && size == 1 {
				return token{}, &SyntaxError{Pos: l.pos(), Msg: "invalid UTF-8 in string"}
			}
			l.advance()
			b.WriteString(l.src[l.off-size : l.off])
		}
		if b.Len() > MaxStringLen {
			return token{}, &SyntaxError{Pos: p, Msg: fmt.Sprintf("string longer than %d bytes", MaxStringLen)}
		}
	}
}

// lexNumber reads an integer (decimal, or hex with 0x as MAA documents
// required_pcr_mask's default 0xFFFFFF) or a dotted version number.
func (l *lexer) lexNumber(p Pos) (token, error) {
	start := l.off
	if l.src[l.off] == '-' {
		l.advance()
	}
	if l.src[l.off] == '0' && (l.peekByte(1) == 'x' || l.peekByte(1) == 'X') {
		l.advance()
		l.advance()
		for l.off < len(l.src) && isHex(l.src[l.off]) {
			l.advance()
		}
	} else {
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.advance()
		}
		if l.off < len(l.src) && l.src[l.off] == '.' && isDigit(l.peekByte(1)) {
			l.advance()
			for l.off < len(l.src) && isDigit(l.src[l.off]) {
				l.advance()
			}
			return token{kind: tokNumber, pos: p, text: l.src[start:l.off]}, nil
		}
	}
	text := l.src[start:l.off]
	if l.off < len(l.src) && isIdentChar(l.src[l.off]) {
		return token{}, &SyntaxError{Pos: p, Msg: fmt.Sprintf("malformed number %q", text+string(l.src[l.off]))}
	}
	v, err := strconv.ParseInt(text, 0, 64)
	if err != nil {
		return token{}, &SyntaxError{Pos: p, Msg: fmt.Sprintf("invalid integer %s: want 64-bit signed decimal or 0x hex", text)}
	}
	return token{kind: tokInt, pos: p, text: text, ival: v}, nil
}

func isHex(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}
