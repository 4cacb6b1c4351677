package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"khproxy/guard"
)

// Summary is what verified lines hold, added up over one or more files.
// The zero value is empty and ready to use; it is not safe for concurrent
// use.
type Summary struct {
	Files   int
	Lines   int
	Sent    int // calls that may have reached the API
	Refused map[string]int
	// Orders are distinct order ids the API answered 2xx with; Spend sums
	// their amounts per currency, in hundredths.
	Orders map[string]bool
	Spend  map[string]int64
	// LastHash is the last line's hash of each file, in order: keep it
	// elsewhere to notice lines cut off the end, which no chain can show.
	LastHash []string
}

// LineError names the first line of a file that does not verify.
type LineError struct {
	File string
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds one line.
const maxLine = 16 << 20

// Verify checks the chain of one file, read from r and named name in
// errors, and adds its lines to s. The first line must continue Genesis
// and each next one the line before; every line must hash to its own hash.
// It stops at the first line that does not verify and returns a
// *LineError naming it.
func (s *Summary) Verify(name string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	prev, n := Genesis, 0
	for {
		b, err := readLine(br)
		if err == io.EOF {
			break
		}
		n++
		if err != nil {
			return &LineError{File: name, Line: n, Err: err}
		}
		rec, hash, err := parseLine(b)
		if err != nil {
			return &LineError{File: name, Line: n, Err: err}
		}
		if rec.Prev != prev {
			why := "its prev is not the hash of the line before it: a line was removed, inserted or moved here"
			if n == 1 {
				why = "it is the file's first line but does not start the chain: lines before it were removed"
			}
			return &LineError{File: name, Line: n, Err: errors.New(why)}
		}
		prev = hash
		s.add(rec)
	}
	s.Files++
	s.LastHash = append(s.LastHash, prev)
	return nil
}

// readLine returns the next line without its newline; a last line without
// one is an error (a torn or cut write).
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(line) > maxLine {
				return nil, errors.New("line longer than 16 MiB")
			}
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("the file ends in an incomplete line (no newline)")
		default:
			return nil, err
		}
	}
}

func (s *Summary) add(rec *Record) {
	s.Lines++
	if rec.Sent {
		s.Sent++
	}
	if rec.Rule != "" {
		if s.Refused == nil {
			s.Refused = map[string]int{}
		}
		s.Refused[rec.Rule]++
	}
	if rec.OrderID == "" || rec.UpstreamStatus < 200 || rec.UpstreamStatus > 299 || s.Orders[rec.OrderID] {
		return
	}
	if s.Orders == nil {
		s.Orders, s.Spend = map[string]bool{}, map[string]int64{}
	}
	s.Orders[rec.OrderID] = true
	if c, err := guard.ParseCents(rec.Amount, true); err == nil && rec.Currency != "" {
		s.Spend[rec.Currency] += c
	}
}

// String writes the totals in a few lines.
func (s *Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d files, %d lines verified: %d calls sent to the API, %d orders\n", s.Files, s.Lines, s.Sent, len(s.Orders))
	for _, c := range slices.Sorted(maps.Keys(s.Spend)) {
		fmt.Fprintf(&b, "spend: %s %s\n", guard.FormatCents(s.Spend[c]), c)
	}
	if len(s.Refused) == 0 {
		b.WriteString("refused by a rule: none\n")
	}
	for _, r := range slices.Sorted(maps.Keys(s.Refused)) {
		fmt.Fprintf(&b, "refused by %s: %d\n", r, s.Refused[r])
	}
	return b.String()
}
