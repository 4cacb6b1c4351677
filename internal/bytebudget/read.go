package bytebudget

import (
	"context"
	"io"
)

// MinStep is the least room a body reserves at a time: the smallest piece
// worth allocating. A client that sends one byte holds this much.
const MinStep = 512

// ProbeSize is how many bytes a body reads, into a small scratch buffer
// outside the budget, to learn that more bytes have arrived before it
// reserves room for them.
const ProbeSize = 4 << 10

// NextStep returns how much room a body that holds held bytes, of which
// size are read, reserves once probe more bytes have arrived: at least the
// bytes that arrived and MinStep, as much again as it already has so that
// a large body needs few steps, and never past claim. So a body never holds
// more than about twice what arrived, or MinStep.
func NextStep(held, size, probe, claim int64) int64 {
	step := max(probe, MinStep, held)
	return max(probe, min(step, claim-held))
}

// ReadPieces reads r to its end, at most the hold's claim, into pieces
// of memory, reserving room in h for each piece before anything is read
// into it, as the bytes arrive: the pieces' capacity is what h holds. It
// fails with ErrNeverFits once more than the claim arrives, with ErrNoRoom
// when room did not come within the wait, with ctx's error or r's; the hold
// keeps what it reserved until Release.
func (h *Hold) ReadPieces(ctx context.Context, r io.Reader) ([][]byte, error) {
	var pieces [][]byte
	var piece []byte
	var size, held int64
	var probe [ProbeSize]byte
	for {
		if len(piece) < cap(piece) {
			n, err := r.Read(piece[len(piece):cap(piece)])
			piece = piece[:len(piece)+n]
			pieces[len(pieces)-1] = piece
			size += int64(n)
			if err == io.EOF {
				return pieces, nil
			}
			if err != nil {
				return pieces, err
			}
			continue
		}
		// Full: reserve more only once more has arrived.
		n, err := r.Read(probe[:])
		if n > 0 {
			if size+int64(n) > h.claim {
				return pieces, ErrNeverFits
			}
			step := NextStep(held, size, int64(n), h.claim)
			if gerr := h.Grow(ctx, step); gerr != nil {
				return pieces, gerr
			}
			held += step
			piece = append(make([]byte, 0, step), probe[:n]...)
			pieces = append(pieces, piece)
			size += int64(n)
		}
		if err == io.EOF {
			return pieces, nil
		}
		if err != nil {
			return pieces, err
		}
	}
}
