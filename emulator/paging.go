package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"khproxy/problem"
)

// The page sizes of the list endpoints: per_page's default and maximum.
const (
	defaultPerPage = 20
	maxPerPage     = 100
)

// parsePage reads page (default 1) and per_page (default 20, 1..100).
func parsePage(r *http.Request) (page, perPage int, ae *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return 0, 0, validationError("query", "malformed query string")
	}
	var fields []problem.FieldError
	get := func(name string, def, hi int) int {
		vs, ok := q[name]
		if !ok {
			return def
		}
		if len(vs) > 1 {
			fields = append(fields, problem.FieldError{Field: name, Message: "given more than once"})
			return def
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > hi {
			fields = append(fields, problem.FieldError{Field: name, Message: fmt.Sprintf("must be an integer from 1 to %d", hi)})
			return def
		}
		return n
	}
	page = get("page", 1, 1000000)
	perPage = get("per_page", defaultPerPage, maxPerPage)
	if fields != nil {
		return 0, 0, fieldErrors(fields)
	}
	return page, perPage, nil
}

func pageEnvelope(items []any, total, page, perPage int) map[string]any {
	if items == nil {
		items = []any{}
	}
	return map[string]any{
		"data": items,
		"pagination": map[string]any{
			"page": page, "per_page": perPage, "total": total,
			"total_pages": (total + perPage - 1) / perPage,
		},
	}
}

// pageBounds returns the slice bounds of one page over n items.
func pageBounds(n, page, perPage int) (int, int) {
	start := min((page-1)*perPage, n)
	return start, min(start+perPage, n)
}

// listPage answers one page of the caller's account's ids (chosen by ids),
// each rendered by view, with e.mu held.
func (e *Emulator) listPage(c *call, ids func(*account) []int64, view func(id int64) any) *response {
	page, perPage, ae := parsePage(c.r)
	if ae != nil {
		return c.fail(ae)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	all := ids(e.accountLocked(c.key.Account))
	lo, hi := pageBounds(len(all), page, perPage)
	items := make([]any, 0, hi-lo)
	for _, id := range all[lo:hi] {
		items = append(items, view(id))
	}
	return jsonResponse(http.StatusOK, pageEnvelope(items, len(all), page, perPage))
}
